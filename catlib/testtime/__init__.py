"""Test-time merging: methods that adapt on the unlabelled inputs of the tasks they are evaluated on, so they need
the architecture, the task heads and those inputs, not only state dicts (CAT and every method of
:mod:`catlib.merge` see none of them). Tables that show them beside training-free methods mark them.

* :func:`adamerging` (Yang et al., ICLR 2024): merging coefficients learned by minimising the entropy of the
  merged model's predictions; task-wise (one λ per task) or layer-wise (one per task and parameter tensor); the
  "++" variant learns them over TIES-processed task vectors.
* :func:`surgery` (Yang et al., ICML 2024): a light per-task map after a merged encoder that moves its features
  toward each expert's, trained with an L1 loss on unlabelled inputs.

Each is declared in :data:`TEST_TIME` (a :class:`catlib.merge.registry.Registry`: hyperparameters declared once in
the signature, validation and defaults derived), and called as ``TEST_TIME.get(name).fn(inputs, **hparams)`` with
:class:`TestTimeInputs`; :func:`run` does that and returns per-task accuracy through :mod:`catlib.protocol`.
"""

from .adamerging import TEST_TIME, TestTimeInputs, TestTimeResult, adamerging
from .surgery import SurgeryMap, surgery

__all__ = ["TEST_TIME", "TestTimeInputs", "TestTimeResult", "adamerging", "surgery", "SurgeryMap"]
