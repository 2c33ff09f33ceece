"""glue-tiny: an embedded, procedurally generated stand-in for the paper's Table 3 (eight RoBERTa-base experts on
GLUE): eight GLUE-like tasks on one small grammar (:mod:`.data`), a 4-layer RoBERTa encoder and RoBERTa's
classification head (:mod:`.model`), and the zoo's build script (:mod:`.build`:
``python -m catlib.benchmarks.glue_tiny.build --out DIR --threads N [--smoke]``)."""

from .data import TASKS, VOCAB, VOCAB_SIZE, encode, mlm_corpus, task_split
from .model import Encoder, Head, tiny_config
