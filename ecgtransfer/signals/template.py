"""Morphology relative to the record's typical beat: per-record templates and the beat inputs built from them.

A beat's shape differs more between patients than between a normal and an ectopic beat of one patient, so a
model trained on some patients and used on others learns more that carries over from *how a beat differs from
this patient's usual beat* than from the raw beat. The record's template is the sample-wise median of its beat
windows: no labels, no other record, and the same at predict time on a new recording as at training time.

- :func:`record_template`: the template ``[C, L]`` of one record's beats ``[n, C, L]`` (the median over at most
  :data:`TEMPLATE_MAX_BEATS` beats spread evenly over the record in time, so a 24-hour recording costs the same
  as a 30-minute one and the template still describes the whole recording).
- :func:`store_templates`: the template of every record of a segment store, and which template each segment
  belongs to (grouped by the store's record ids, which are unique across databases in combined stores).
- :func:`compose_input`: the model's input from beats and their templates, by :data:`BEAT_INPUTS`:

  ==================  ==========================  ===========================================================
  ``beat_input``      channels for ``C`` leads    content
  ==================  ==========================  ===========================================================
  ``leads``           ``C``                       the stored leads (no template; the default)
  ``template``        ``2C``                      the leads, then each lead minus its template
  ``template-rgb``    ``3``                       lead 0 / lead 0 minus its template / lead 1 (the template of
                                                  lead 0 for one-lead stores): three image channels for the
                                                  ImageNet-shaped ResNet50 (``encoding_params.lead = "stack"``)
  ==================  ==========================  ===========================================================

Shapes: beats ``[n, C, L]``, templates ``[R, C, L]`` (one per record), model inputs ``[B, C', L]``.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ecgtransfer.errors import ConfigError

log = logging.getLogger(__name__)

#: the model inputs that :func:`compose_input` builds (``TrainConfig.beat_input``); the first is the default
BEAT_INPUTS: tuple[str, ...] = ("leads", "template", "template-rgb")
#: the most beats a template is the median of (spread evenly over the record in time)
TEMPLATE_MAX_BEATS = 4096


def check_beat_input(mode: str, where: str = "beat_input") -> str:
    """``mode`` if it is one of :data:`BEAT_INPUTS`, else :class:`ConfigError` naming ``where``."""
    if mode not in BEAT_INPUTS:
        raise ConfigError(f"{where}: unknown beat input {mode!r}; expected one of {list(BEAT_INPUTS)}")
    return mode


def uses_template(mode: str) -> bool:
    """Whether beat input ``mode`` needs the record templates."""
    return check_beat_input(mode) != "leads"


def input_channels(mode: str, n_leads: int) -> int:
    """Channels of :func:`compose_input`'s output for beats of ``n_leads`` leads."""
    check_beat_input(mode)
    return {"leads": n_leads, "template": 2 * n_leads, "template-rgb": 3}[mode]


def raw_lead_channels(mode: str, n_leads: int) -> int:
    """How many of :func:`compose_input`'s first channels are raw leads (the rest are differences from the template
    or, for ``template-rgb``, its third channel): the features model computes interval features on these only."""
    check_beat_input(mode)
    return 1 if mode == "template-rgb" else n_leads


def template_subset(n: int, max_beats: int = TEMPLATE_MAX_BEATS) -> np.ndarray:
    """Indices ``[m]`` (``m = min(n, max_beats)``, increasing) of the beats a template of ``n`` time-ordered beats is
    the median of: all of them, or ``max_beats`` spread evenly from the first to the last."""
    if n <= max_beats:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, n - 1, max_beats)).astype(np.int64))


def record_template(beats: np.ndarray, max_beats: int = TEMPLATE_MAX_BEATS) -> np.ndarray:
    """The template ``[C, L]`` float32 of one record's beats ``[n, C, L]``, in time order: the sample-wise median of
    :func:`template_subset`'s beats. A record without beats has no template (:class:`ConfigError`)."""
    beats = np.asarray(beats)
    if beats.ndim != 3 or beats.shape[0] == 0:
        raise ConfigError(f"record_template: expected beats [n >= 1, C, L], got shape {beats.shape}")
    sub = beats[template_subset(beats.shape[0], max_beats)]
    return np.median(np.asarray(sub, dtype=np.float32), axis=0).astype(np.float32)


def store_templates(store: Any, max_beats: int = TEMPLATE_MAX_BEATS) -> tuple[np.ndarray, np.ndarray]:
    """Templates of every record of a beat store: ``(templates [R, C, L] float32, index [N] int64)``.

    ``index[i]`` is the row of ``templates`` of segment ``i``'s record. Each record's template is
    :func:`record_template` of its segments ordered by position (the record's own beats only, every class, no
    label read). Computed once per store content and cached in memory (:attr:`SegmentStore.manifest_hash`).
    """
    key = (str(getattr(store, "path", id(store))), getattr(store, "manifest_hash", None), int(max_beats))
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    record_ids = np.asarray(store.record_ids)
    positions = np.asarray(store.positions)
    _, index = np.unique(record_ids, return_inverse=True)
    index = index.astype(np.int64).reshape(-1)
    order = np.lexsort((positions, index))  # by record, then by position: each record's beats in time order
    bounds = np.flatnonzero(np.diff(index[order])) + 1
    groups = np.split(order, bounds) if len(order) else []
    segments = store.segments
    templates = np.empty((len(groups), *segments.shape[1:]), dtype=np.float32)
    for r, members in enumerate(groups):
        chosen = np.sort(members[template_subset(len(members), max_beats)])
        templates[r] = record_template(segments[chosen], max_beats)
    log.info("record templates: %d records, median of at most %d beats each", len(groups), max_beats)
    _CACHE.clear()  # one store at a time: a bench evaluates one store, and templates of a big store are large
    _CACHE[key] = (templates, index)
    return templates, index


_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def compose_input(beats: np.ndarray, templates: np.ndarray | None, mode: str) -> np.ndarray:
    """The model input ``[B, C', L]`` float32 of beats ``[B, C, L]`` and each beat's record template ``[B, C, L]``
    (``None`` for ``mode="leads"``), by :data:`BEAT_INPUTS`."""
    check_beat_input(mode)
    beats = np.asarray(beats, dtype=np.float32)
    if mode == "leads":
        return beats
    if templates is None or np.shape(templates) != beats.shape:
        raise ConfigError(f"beat input {mode!r} needs one template per beat of shape {beats.shape[1:]}, got "
                          f"{None if templates is None else np.shape(templates)}")
    diff = beats - templates
    if mode == "template":
        return np.ascontiguousarray(np.concatenate([beats, diff], axis=1))
    third = beats[:, 1] if beats.shape[1] > 1 else templates[:, 0]
    return np.ascontiguousarray(np.stack([beats[:, 0], diff[:, 0], third], axis=1))
