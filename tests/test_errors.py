"""Bad inputs: each gets a clear error of a specific type whose message names the problem."""

import pytest
import torch

import catlib
from catlib.core.errors import (
    HyperparameterError,
    IncompatibleStateDictError,
    MissingStatisticsError,
    NonFiniteError,
    UnknownMethodError,
)


@pytest.fixture
def pf():
    p = {"w": torch.zeros(2, 3), "b": torch.zeros(3), "ids": torch.arange(3)}
    f = [{"w": torch.ones(2, 3), "b": torch.ones(3), "ids": torch.arange(3)} for _ in range(2)]
    return p, f


def test_unknown_method(pf):
    with pytest.raises(UnknownMethodError, match=r"unknown merge method 'tiez'.*available: \[.*'ties'"):
        catlib.merge("tiez", *pf)


def test_unknown_hyperparameter(pf):
    with pytest.raises(HyperparameterError, match="unknown hyperparameter 'lambda'"):
        catlib.merge("task_arithmetic", *pf, **{"lambda": 0.3})


def test_negative_alpha(pf):
    with pytest.raises(HyperparameterError, match=r"alpha=-0.1 is outside"):
        catlib.merge("task_arithmetic", *pf, alpha=-0.1)


def test_nan_hyperparameter(pf):
    with pytest.raises(HyperparameterError, match=r"alpha must be a finite number in \[0.0, None\], got nan"):
        catlib.merge("ties", *pf, alpha=float("nan"))


def test_ties_k_out_of_range(pf):
    with pytest.raises(HyperparameterError, match=r"k=20 is outside"):
        catlib.merge("ties", *pf, k=20)


def test_bad_choice(pf):
    with pytest.raises(HyperparameterError, match=r"merge_func='median' is not one of"):
        catlib.merge("ties", *pf, merge_func="median")


def test_non_integer_c(pf):
    with pytest.raises(HyperparameterError, match="c must be an integer"):
        catlib.merge("cat", *pf, c=2.5)


def test_bool_switch_given_string(pf):
    with pytest.raises(HyperparameterError, match="linear must be True or False"):
        catlib.merge("cat", *pf, linear="yes")


def test_string_for_number(pf):
    with pytest.raises(HyperparameterError, match="alpha must be a finite number"):
        catlib.merge("task_arithmetic", *pf, alpha="0.3")


def test_missing_key(pf):
    p, f = pf
    del f[1]["b"]
    with pytest.raises(IncompatibleStateDictError, match=r"finetuned\[1\]: missing key 'b'"):
        catlib.merge("task_arithmetic", p, f)


def test_unexpected_key(pf):
    p, f = pf
    f[0]["extra"] = torch.zeros(1)
    with pytest.raises(IncompatibleStateDictError, match=r"finetuned\[0\]: unexpected key 'extra'"):
        catlib.merge("task_arithmetic", p, f)


def test_shape_mismatch(pf):
    p, f = pf
    f[1]["w"] = torch.zeros(3, 2)
    with pytest.raises(IncompatibleStateDictError, match=r"shape mismatch at key 'w': \(3, 2\) vs pretrained \(2, 3\)"):
        catlib.merge("weight_average", p, f)


def test_nan_in_finetuned(pf):
    p, f = pf
    f[0]["w"][0, 1] = float("nan")
    with pytest.raises(NonFiniteError, match=r"finetuned\[0\]: key 'w' contains NaN"):
        catlib.merge("ties", p, f)


def test_inf_in_pretrained(pf):
    p, f = pf
    p["b"][0] = float("inf")
    with pytest.raises(NonFiniteError, match="pretrained: key 'b' contains Inf"):
        catlib.merge("ties", p, f)


def test_float_vs_integer_dtype(pf):
    p, f = pf
    f[0]["ids"] = torch.zeros(3)
    with pytest.raises(IncompatibleStateDictError, match="dtype mismatch at key 'ids'"):
        catlib.merge("task_arithmetic", p, f)


def test_empty_finetuned_list(pf):
    with pytest.raises(ValueError, match="non-empty list"):
        catlib.merge("task_arithmetic", pf[0], [])


def test_non_tensor_value(pf):
    p, f = pf
    f[0]["w"] = [[1.0]]
    with pytest.raises(TypeError, match=r"finetuned\[0\]: key 'w' is a list, not a Tensor"):
        catlib.merge("task_arithmetic", p, f)


def test_data_dependent_without_statistics(pf):
    with pytest.raises(MissingStatisticsError, match=r"cat is data-dependent .*module=\.\.\. and exemplars"):
        catlib.merge("cat", *pf)


def test_fisher_without_heads_mentions_heads(pf):
    with pytest.raises(MissingStatisticsError, match="heads"):
        catlib.merge("fisher", *pf)


def test_wrong_number_of_exemplar_batches(vit_setup):
    s = vit_setup
    with pytest.raises(ValueError, match="got 2 exemplar batches for 3 fine-tuned models"):
        catlib.merge("cat", s["pretrained"], s["finetuned"], module=s["module"], exemplars=s["exemplars"][:2])


def test_tatr_needs_labels(vit_setup):
    s = vit_setup
    with pytest.raises(ValueError, match="need labelled exemplars"):
        catlib.merge(
            "tatr", s["pretrained"], s["finetuned"], module=s["module"], exemplars=s["exemplars"], heads=s["heads"]
        )


def test_statistics_for_other_number_of_tasks(vit_setup):
    s = vit_setup
    st = catlib.collect_statistics(s["module"], s["pretrained"], s["finetuned"][:2], s["exemplars"][:2])
    with pytest.raises(MissingStatisticsError, match="statistics cover 2 tasks, got 3"):
        catlib.merge("regmean", s["pretrained"], s["finetuned"], stats=st)


def test_bad_exemplar_type(vit_setup):
    s = vit_setup
    with pytest.raises(TypeError, match="exemplar batch must be a Tensor"):
        catlib.merge("cat", s["pretrained"], s["finetuned"], module=s["module"], exemplars=["a", "b", "c"])


def test_module_of_wrong_architecture(vit_setup):
    s = vit_setup
    with pytest.raises(KeyError, match="is not in the pretrained state dict"):
        catlib.merge(
            "cat", {"w": torch.zeros(2)}, [{"w": torch.ones(2)}] * 3, module=s["module"], exemplars=s["exemplars"]
        )


def test_awd_needs_two_vectors():
    with pytest.raises(ValueError, match="at least two task vectors"):
        catlib.merge("awd_ta", {"w": torch.zeros(2)}, [{"w": torch.ones(2)}])


def test_unknown_benchmark():
    with pytest.raises(KeyError, match="unknown benchmark 'imagenet'"):
        catlib.load_benchmark("imagenet")
