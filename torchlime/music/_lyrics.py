"""The lyrics interpretable space: lines (bach-or-bot) or distinct words (MusicLIME).

Shape glossary: n perturbation samples, L lyric units, Q tokens.
"""

from __future__ import annotations

import re
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from itertools import compress
from typing import Any

import torch
from torch import Tensor

__all__ = ["LyricsFactorization", "UNITS", "PADDINGS"]

UNITS = ("line", "word")
PADDINGS = ("longest", "max_length")

# bach-or-bot's LineIndexedString drops section labels such as "[Chorus]" or "(Instrumental)".
_ANNOTATION = (re.compile(r"^\[.*\]$"), re.compile(r"^\(.*\)$"))
# lime.lime_text.IndexedString(text, bow=True, split_expression=r"\W+") splits like this.
_WORD_SPLITTER = re.compile(r"(%s)|$" % r"\W+")

# The masks the fast path is checked on at construction (see _verification_masks).
_MAX_SINGLE_CHECKS = 128
_RANDOM_DENSITIES = (0.2, 0.5, 0.8)
# Characters of text per tokenizer call in the exact path (about 60 MB of tokenizer state).
_TOKENIZE_CHARS = 1 << 20
# The fast path's checked tables (or why it is not exact), per tokenizer (held weakly) and per
# lyrics and settings, the last _FAST_CACHE_SIZE of each tokenizer: a song set up again (another
# explanation, its evaluation, a resumed run) skips the tokenizer calls of the check.
_FAST_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_FAST_CACHE_SIZE = 64


def _is_annotation(line: str) -> bool:
    return any(p.match(line) for p in _ANNOTATION)


def _verification_masks(alone: Tensor, budget: int) -> Tensor:
    """The ``(m, L)`` bool masks the fast path is checked on, whose texts add up to about 5.5
    times the lyrics (so the check grows linearly with them, not with L times their length).

    Rows: all units; none; every other unit off (both parities: every unit's two neighbours
    meet, as when that unit alone is off, and the first and the last unit go); every third
    unit alone (units three apart meet); random masks at densities 0.2, 0.5 and 0.8; then
    units alone (each unit's tokens with the special tokens around them): all of them up to
    128 units, a random 128 beyond, as far as their texts add up to ``budget`` characters
    (the lines alone add up to about the lyrics' length; a word alone keeps every
    separator, so only a few words are checked alone). A local generator: the global RNG is untouched.

    Args:
        alone: ``(L,)`` the length in characters of the text of each unit alone.
        budget: characters the units alone may take together (at least one is taken).
    """
    L = len(alone)
    generator = torch.Generator().manual_seed(0)
    index = torch.arange(L)
    structured = [torch.ones(L, dtype=torch.bool), torch.zeros(L, dtype=torch.bool)]
    structured += [index % 2 != r for r in range(2)]
    structured += [index % 3 == r for r in range(3)]
    density = torch.tensor(_RANDOM_DENSITIES)[:, None]
    rand = torch.rand(len(density), L, generator=generator) < density
    singles = index if L <= _MAX_SINGLE_CHECKS else torch.randperm(L, generator=generator)[:_MAX_SINGLE_CHECKS]
    within = alone[singles].cumsum(0) <= budget
    within[0] = True
    singles = singles[within]
    one = torch.zeros(len(singles), L, dtype=torch.bool)
    one[torch.arange(len(singles)), singles] = True
    return torch.cat([torch.stack(structured), rand, one])


def distinct_names(units: Sequence[str]) -> list[str]:
    """Feature names for unit texts: a repeated unit's later occurrences get `` (2)``, `` (3)``, ...

    The first occurrence keeps its text; a name that is itself one of the units is skipped,
    so every name is distinct.

    Example:
        >>> distinct_names(["I'm on fire", "la la", "I'm on fire", "I'm on fire (2)"])
        ["I'm on fire", 'la la', "I'm on fire (3)", "I'm on fire (2)"]
    """
    taken = set(units)
    seen: set[str] = set()
    names = []
    for unit in units:
        if unit not in seen:
            seen.add(unit)
            names.append(unit)
            continue
        k = 2
        while f"{unit} ({k})" in taken:
            k += 1
        name = f"{unit} ({k})"
        taken.add(name)
        names.append(name)
    return names


class LyricsFactorization:
    """Lyrics as L binary features: lines (``unit="line"``) or distinct words (``unit="word"``).

    * ``unit="line"`` reproduces bach-or-bot's ``LineIndexedString``: the units are the
      stripped, non-empty lines (without annotation lines such as ``[Chorus]`` or
      ``(Instrumental)`` when ``drop_annotations``), and a perturbed text is the kept lines
      joined by ``"\\n"``. Every occurrence of a repeated line (a chorus) is a unit of its
      own; in :attr:`feature_names` the second is named ``"<line> (2)"``, the third
      ``"<line> (3)"`` and so on (:attr:`units` keeps the texts).
    * ``unit="word"`` reproduces the original MusicLIME, which explains
      ``lime.lime_text.IndexedString(text, bow=True, split_expression=r"\\W+")``: the units
      are the distinct words in order of first occurrence (lime's ``inverse_vocab``),
      switching one off removes all its occurrences and keeps every separator, and a
      perturbed text is lime's ``inverse_removing``. The text is the lyrics verbatim, minus
      the annotation lines when ``drop_annotations`` (pass ``drop_annotations=False`` for
      exactly MusicLIME's units). The splitting is a port of lime's (lime is not a runtime
      dependency); the tests check it against lime itself.

    :meth:`compose` returns what ``tokenizer(self.texts(masks), padding=padding,
    truncation=max_length is not None, max_length=max_length, return_tensors="pt")``
    returns (``input_ids`` and ``attention_mask``), computed one of two ways:

    * **fast** (``self.fast``): the text is tokenized once, unit by unit, at construction;
      a batch of masks becomes the kept-token positions of every row, left-packed with a
      cumsum and a batched ``searchsorted`` gather, then special tokens, truncation (the
      tokenizer's ``truncation_side``) and padding (its ``padding_side`` and pad id), all in
      tensor ops on the device with no loop over rows. This is exact when tokenizing the
      kept units' text gives the kept units' tokens, which holds when the tokenizer never
      lets text on either side of a unit boundary change a token.
    * **exact**: re-tokenizes ``self.texts(masks)`` on the host (the tokenizer's own call).

    ``exact=None`` picks the fast path only where it is verified at construction: the
    tokens of the whole text must be the concatenation of the tokens of its pieces
    (units and separators) tokenized apart, and the fast result must equal the tokenizer's,
    untruncated, on the all-ones and all-zeros masks, every other unit off (both parities:
    every unit's neighbours meet), every third unit alone, three random masks and every
    unit alone (up to 128 units), and with the given ``max_length`` and ``padding`` on three
    of them. Those texts add up to about 6.5 times the lyrics, tokenized in three batched
    calls, so the check costs a few tokenizations of the song and grows linearly with the
    lyrics (a few milliseconds for a 40-line song; a 10,000-line text takes seconds, not
    minutes). The outcome is remembered per tokenizer object, lyrics and settings (the last
    64 of each tokenizer; a change to the tokenizer's padding or truncation side, pad token or
    vocabulary checks anew), so the same song set up again (another explanation, its
    evaluation) skips the tokenizer calls. Other changes made to a tokenizer in place (a new
    normalizer on its backend, say) are not seen: give such a tokenizer as a new object. The
    reason the fast path was not taken is in ``exact_reason``.

    Which combinations are fast (checked by the tests):

    * WordPiece with BERT's normalizer and pre-tokenizer (BERT, DistilBERT, ...): lines
      and words. Whitespace and punctuation always split words, and whitespace makes no
      token, so removing a unit removes exactly its tokens.
    * Byte-level BPE with ``add_prefix_space=False`` (GPT-2, RoBERTa): lines. The ``"\\n"``
      between lines is a pre-token of its own (``Ċ``), so merges never cross lines; a
      removed line takes the newline before it (or after it, for the first kept line).
    * Byte-level BPE, words: **exact**. The space before a word belongs to the word's
      token (``"Ġlove"``), so the whole text's tokens are not those of its words and
      separators apart, and removing a word leaves spaces and punctuation that re-tokenize
      into tokens the original does not contain (``"a  c"`` gives ``Ġ`` ``Ġc``, ``"a ,"``
      gives ``Ġ,``).
    * SentencePiece (Unigram or BPE over Metaspace, the newline normalized to a space, as
      T5): lines fast (the newline becomes the next line's ``"▁"``, which every line starts
      with anyway); words exact, as byte-level BPE.
    * ``add_prefix_space=True`` byte-level tokenizers: lines and words exact (the first
      line starts with ``"Ġ"`` only as the first line of the lyrics, not after a newline).
    * Slow (Python) tokenizers and other families: whatever the check finds. It is
      empirical for families not listed above: pass ``exact=True`` where a guarantee
      matters more than speed.

    On an accelerator, ``padding="longest"`` reads the batch's longest row on the host (the
    output shape depends on it): one sync per call, which also carries the check that float
    masks are binary. ``padding="max_length"`` with bool masks is sync-free.

    Args:
        lyrics: the song's lyrics, lines separated by ``"\\n"`` (a leading byte-order mark,
            U+FEFF, as Windows editors write, is dropped).
        tokenizer: a Hugging Face tokenizer (``transformers.PreTrainedTokenizerBase``), or
            None (then :meth:`texts` works and :meth:`compose` raises).
        unit: "line" or "word".
        drop_annotations: drop lines that are ``[...]`` or ``(...)`` (after stripping).
        max_length: truncate every sample to this many tokens, special tokens included
            (None: no truncation).
        padding: "longest" (pad to the batch's longest row) or "max_length" (pad to
            ``max_length``, which is then required).
        exact: None picks the fast path where verified, True always re-tokenizes, False
            requires the fast path (ValueError at construction where it is not exact).
        device: where :meth:`compose` puts its output (None: the masks' device).

    Attributes:
        text: the lyrics as given (without a leading byte-order mark).
        base_text: the all-ones text (what ``texts`` gives for a row of ones).
        units: the L unit texts, in feature order.
        fast: whether :meth:`compose` takes the fast path.
        exact_reason: why it does not (None when it does).

    Raises:
        TypeError: ``lyrics`` not a str, a non-callable tokenizer, bad option types.
        ValueError: empty lyrics, no unit left, an unknown ``unit`` or ``padding``, a
            ``max_length`` that leaves no room for text, a tokenizer without a pad token,
            or ``exact=False`` where the fast path is not exact.

    Example:
        >>> f = LyricsFactorization("[Verse]\\nHello there\\n\\nGeneral Kenobi")
        >>> f.num_features, f.feature_names
        (2, ['Hello there', 'General Kenobi'])
        >>> f.texts(torch.tensor([[1, 0], [1, 1], [0, 0]]))
        ['Hello there', 'Hello there\\nGeneral Kenobi', '']
        >>> w = LyricsFactorization("la la, love", unit="word")
        >>> w.feature_names, w.texts(torch.tensor([[0, 1]]))
        (['la', 'love'], [' , love'])
        >>> # with a tokenizer: ids, attention = f.compose(masks), each (n, Q)
    """

    def __init__(
        self,
        lyrics: str,
        tokenizer: Any = None,
        *,
        unit: str = "line",
        drop_annotations: bool = True,
        max_length: int | None = None,
        padding: str = "longest",
        exact: bool | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(lyrics, str):
            raise TypeError(f"expected lyrics to be a str, got {type(lyrics).__name__}")
        lyrics = lyrics.removeprefix("\ufeff")  # a UTF-8 file's byte-order mark is not text
        if not lyrics.strip():
            raise ValueError(f"expected non-empty lyrics, got an empty or whitespace-only string {lyrics!r}")
        if unit not in UNITS:
            raise ValueError(f"expected unit in {UNITS}, got {unit!r}")
        if padding not in PADDINGS:
            raise ValueError(f"expected padding in {PADDINGS}, got {padding!r}")
        if exact is not None and not isinstance(exact, bool):
            raise TypeError(f"expected exact to be None, True or False, got {exact!r}")
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)):
            raise TypeError(f"expected max_length to be an int or None, got {max_length!r}")
        if max_length is not None and max_length < 1:
            raise ValueError(f"expected max_length >= 1, got {max_length}")
        if padding == "max_length" and max_length is None:
            raise ValueError("expected a max_length with padding='max_length', got max_length=None")
        if tokenizer is not None and not callable(tokenizer):
            raise TypeError(f"expected a callable Hugging Face tokenizer or None, got {type(tokenizer).__name__}")

        self.text = lyrics
        self.tokenizer = tokenizer
        self.unit = unit
        self.drop_annotations = bool(drop_annotations)
        self.max_length = max_length
        self.padding = padding
        self.device = torch.device(device) if device is not None else None

        raw_lines = lyrics.split("\n")
        annotations = [s for s in (line.strip() for line in raw_lines) if s and _is_annotation(s)]
        dropped = annotations if self.drop_annotations else []

        # pieces: (text, unit index or -1 for a separator), in text order; the perturbed text
        # is the concatenation of the kept pieces (line separators kept as described above).
        pieces: list[tuple[str, int]] = []
        if unit == "line":
            stripped = (line.strip() for line in raw_lines)
            lines = [s for s in stripped if s and not (self.drop_annotations and _is_annotation(s))]
            if not lines:
                raise ValueError(
                    f"expected at least one lyric line, got none after dropping empty lines and "
                    f"{len(dropped)} annotation line(s) such as {dropped[:3]} "
                    f"(pass drop_annotations=False to keep annotation lines)"
                )
            self.units = lines
            for i, line in enumerate(lines):
                if i:
                    pieces.append(("\n", -1))
                pieces.append((line, i))
            self.base_text = "\n".join(lines)
        else:
            if self.drop_annotations:
                kept = [line for line in raw_lines if not _is_annotation(line.strip())]
                if not any(line.strip() for line in kept):
                    raise ValueError(
                        f"expected at least one lyric line, got none after dropping "
                        f"{len(dropped)} annotation line(s) such as {dropped[:3]} "
                        f"(pass drop_annotations=False to keep annotation lines)"
                    )
                base = "\n".join(kept)
            else:
                base = lyrics
            # Port of lime.lime_text.IndexedString(base, bow=True, split_expression=r"\W+").
            vocab: dict[str, int] = {}
            for piece in (s for s in _WORD_SPLITTER.split(base) if s):
                if _WORD_SPLITTER.match(piece):
                    pieces.append((piece, -1))
                else:
                    pieces.append((piece, vocab.setdefault(piece, len(vocab))))
            if not vocab:
                raise ValueError(
                    f"expected lyrics with at least one word (a run of \\w characters), got none in {base!r}"
                )
            self.units = list(vocab)
            self.base_text = base
        self._pieces = pieces
        # each piece's unit, L for a separator (a column of ones in texts())
        self._piece_column = torch.tensor([u if u >= 0 else len(self.units) for _, u in pieces], dtype=torch.long)

        self.fast = False
        self.exact_reason: str | None = None
        self._num_special = 0
        self._cpu_buffers: dict[str, Any] | None = None
        self._device_buffers: dict[str, dict[str, Any]] = {}
        if tokenizer is None:
            self.exact_reason = "no tokenizer"
            if exact is False:
                raise ValueError(
                    "expected a tokenizer with exact=False (the fast path composes token ids), got tokenizer=None"
                )
            return
        if getattr(tokenizer, "pad_token_id", None) is None:
            raise ValueError(
                f"expected a tokenizer with a pad token (compose pads the batch), got "
                f"{type(tokenizer).__name__} with pad_token=None; set tokenizer.pad_token first"
            )
        self._num_special = int(tokenizer.num_special_tokens_to_add(pair=False))
        if max_length is not None and max_length < self._num_special + 1:
            raise ValueError(
                f"expected max_length >= {self._num_special + 1} (the tokenizer's {self._num_special} "
                f"special tokens plus at least one token of text), got {max_length}"
            )
        if exact:
            self.exact_reason = "exact=True was requested"
            return
        reason = self._cached_build_fast()
        if reason is not None:
            self._cpu_buffers = None
            if exact is False:
                raise ValueError(
                    f"expected a tokenizer the fast path is exact for with unit={unit!r} (exact=False), "
                    f"got one where {reason}"
                )
            self.exact_reason = reason
            return
        self.fast = True

    # -- the interpretable space ------------------------------------------------------------

    @property
    def num_features(self) -> int:
        """L, the number of units."""
        return len(self.units)

    @property
    def feature_names(self) -> list[str]:
        """L distinct names: the unit texts, a repeated line's later occurrences as ``"<line> (2)"``, ..."""
        return distinct_names(self.units)

    def __repr__(self) -> str:
        path = "fast" if self.fast else f"exact ({self.exact_reason})"
        return f"LyricsFactorization(unit={self.unit!r}, num_features={self.num_features}, path={path})"

    def texts(self, masks: Tensor) -> list[str]:
        """The perturbed lyrics of each row (for ``predict_fn(texts, waveforms)``).

        Args:
            masks: ``(n, L)`` 0/1 (or bool) masks, 1 keeps a unit.

        Returns:
            n strings.

        Raises:
            TypeError: masks that are not array-like.
            ValueError: masks not of shape ``(n, L)`` or not binary.
        """
        keep, bad = self._check_masks(masks)
        if bad is not None and bool(bad):
            raise ValueError("expected binary (0/1) lyrics masks, got other values")
        keep = keep.cpu()
        if self.unit == "line":
            return ["\n".join(compress(self.units, row)) for row in keep.tolist()]
        # which pieces each row keeps: its words' occurrences and every separator, (n, pieces)
        always = torch.ones_like(keep[:, :1])
        kept = torch.cat([keep, always], 1).index_select(1, self._piece_column)
        texts = [p for p, _ in self._pieces]
        return ["".join(compress(texts, row)) for row in kept.tolist()]

    def compose(self, masks: Tensor) -> tuple[Tensor, Tensor]:
        """Token ids and attention mask of each row's perturbed lyrics.

        Equal to ``tokenizer(self.texts(masks), padding=padding, truncation=max_length is not
        None, max_length=max_length, return_tensors="pt")``'s ``input_ids`` and
        ``attention_mask``.

        Args:
            masks: ``(n, L)`` 0/1 (or bool) masks, 1 keeps a unit.

        Returns:
            ``(input_ids, attention_mask)``, each ``(n, Q)`` int64 on ``device`` (or the
            masks' device), Q the longest row or ``max_length``.

        Raises:
            ValueError: no tokenizer, masks not of shape ``(n, L)`` or not binary.
        """
        if self.tokenizer is None:
            raise ValueError(
                "expected a tokenizer to compose input ids, got tokenizer=None "
                "(pass one to LyricsFactorization, or use texts() with a predict_fn)"
            )
        keep, bad = self._check_masks(masks)
        device = self.device if self.device is not None else keep.device
        if not self.fast:
            texts = self.texts(masks)
            ids, attention = self._tokenize(texts, self.max_length, self.padding)
            return ids.to(device), attention.to(device)
        if bad is not None:
            bad = bad.to(device)
        return self._compose_fast(keep.to(device), bad, self.max_length, self.padding, self._buffers(device))

    # -- helpers ----------------------------------------------------------------------------

    def _check_masks(self, masks: Any) -> tuple[Tensor, Tensor | None]:
        """Shape-check masks; returns ``(keep (n, L) bool, non-binary flag or None)`` without a sync."""
        if not isinstance(masks, Tensor):
            try:
                masks = torch.as_tensor(masks)
            except (TypeError, ValueError, RuntimeError) as err:
                raise TypeError(
                    f"expected lyrics masks as a tensor of shape (n, {self.num_features}), got {type(masks).__name__}"
                ) from err
        if masks.dim() != 2 or masks.shape[1] != self.num_features:
            raise ValueError(
                f"expected lyrics masks of shape (n, {self.num_features}) (one column per {self.unit}), "
                f"got shape {tuple(masks.shape)}"
            )
        if masks.dtype == torch.bool:
            return masks, None
        if masks.is_complex():
            raise TypeError(f"expected real lyrics masks, got dtype {masks.dtype}")
        return masks != 0, ((masks != 0) & (masks != 1)).any()

    def _tokenize(self, texts: list[str], max_length: int | None, padding: str) -> tuple[Tensor, Tensor]:
        """The reference: the tokenizer's own call, ``(n, Q)`` each on the CPU."""
        if not texts:
            width = max_length if padding == "max_length" else 0
            empty = torch.zeros(0, width or 0, dtype=torch.long)
            return empty, empty.clone()
        # Rows in groups of at most _TOKENIZE_CHARS characters: the tokenizer keeps far more
        # per token than the two int64 outputs (strings, offsets), so long lyrics times many
        # rows in one call would take gigabytes. Groups padded to the longest row of all, at
        # the tokenizer's padding side with its pad id, are what one call returns.
        groups, start, size = [], 0, 0
        for end, text in enumerate(texts):
            if size and size + len(text) > _TOKENIZE_CHARS:
                groups.append(texts[start:end])
                start, size = end, 0
            size += len(text)
        groups.append(texts[start:])
        parts = []
        for group in groups:
            enc = self.tokenizer(
                group, padding=padding, truncation=max_length is not None, max_length=max_length, return_tensors="pt"
            )
            parts.append((enc["input_ids"].long(), enc["attention_mask"].long()))
        if len(parts) == 1:
            return parts[0]
        width = max(ids.shape[1] for ids, _ in parts)
        left = getattr(self.tokenizer, "padding_side", "right") == "left"

        def pad(x: Tensor, value: int) -> Tensor:
            extra = width - x.shape[1]
            return torch.nn.functional.pad(x, (extra, 0) if left else (0, extra), value=value)

        pad_id = int(self.tokenizer.pad_token_id)
        return (torch.cat([pad(ids, pad_id) for ids, _ in parts]), torch.cat([pad(att, 0) for _, att in parts]))

    def _ids(self, texts: Sequence[str], add_special_tokens: bool) -> list[list[int]]:
        return [list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=add_special_tokens)["input_ids"]]

    def _cached_build_fast(self) -> str | None:
        """:meth:`_build_fast`, remembered per tokenizer, lyrics and settings.

        The key holds what the check depends on: the text and its unit, ``max_length`` and
        ``padding``, and the tokenizer's padding and truncation sides, pad id, special tokens
        and vocabulary size (a token added to the tokenizer, or a side changed, checks anew).
        A tokenizer that cannot be held weakly or hashed is checked every time.
        """
        tok = self.tokenizer
        size = getattr(tok, "__len__", None)  # through a proxy's __getattr__ too
        key = (
            self.base_text, self.unit, self.max_length, self.padding, getattr(tok, "padding_side", None),
            getattr(tok, "truncation_side", None), int(tok.pad_token_id), self._num_special,
            size() if callable(size) else None,
        )
        try:
            entries = _FAST_CACHE.get(tok)
        except TypeError:  # not weakly referable or not hashable
            return self._build_fast()
        if entries is not None and key in entries:
            entries.move_to_end(key)
            reason, self._cpu_buffers = entries[key]
            return reason
        reason = self._build_fast()
        if entries is None:
            entries = _FAST_CACHE.setdefault(tok, OrderedDict())
        entries[key] = (reason, self._cpu_buffers)
        if len(entries) > _FAST_CACHE_SIZE:
            entries.popitem(last=False)
        return reason

    def _build_fast(self) -> str | None:
        """Tokenize the pieces once and check the fast path; None when it is exact, else why not.

        Three tokenizer calls, each batched, whose texts add up to a few times the lyrics'
        length (so the cost grows linearly with the lyrics): the distinct pieces and the
        whole text (one call), the verification masks' texts with special tokens (one call, unpadded),
        and three of them with the given ``max_length`` and ``padding`` (one call, padded).
        """
        texts = [p for p, _ in self._pieces]
        distinct = list(dict.fromkeys(texts))  # a chorus line, a word, ", ": tokenized once
        *ids_of, whole = self._ids([*distinct, self.base_text], add_special_tokens=False)
        ids_of = dict(zip(distinct, ids_of))
        per_piece = [ids_of[p] for p in texts]
        joined = [t for ids in per_piece for t in ids]
        if joined != whole and self.unit == "line":
            # SentencePiece style: the newline turns into the next line's word-start mark and
            # has no token of its own in context; then the lines alone must add up
            lines_only = [ids if u >= 0 else [] for (_, u), ids in zip(self._pieces, per_piece)]
            if [t for ids in lines_only for t in ids] == whole:
                per_piece, joined = lines_only, whole
        if joined != whole:
            at = next((i for i, (a, b) in enumerate(zip(joined, whole)) if a != b), min(len(joined), len(whole)))
            start = 0
            for k, ids in enumerate(per_piece):  # the piece where the two tokenizations part
                if start + len(ids) > at:
                    break
                start += len(ids)
            convert = getattr(self.tokenizer, "convert_ids_to_tokens", lambda ids: ids)
            hint = (
                "a tokenizer that adds a prefix space, for one, starts the first line differently"
                if self.unit == "line"
                else "byte-level BPE and SentencePiece, for two, put the space before a word into the word's token"
            )
            return (
                f"the tokenizer merges text across {self.unit} boundaries: the whole lyrics tokenize as "
                f"{convert(whole[at:at + 3])} at token {at}, but unit by unit (pieces {texts[k:k + 2]!r}) as "
                f"{convert(joined[at:at + 3])} ({hint})"
            )
        if self.unit == "line":
            alone = torch.tensor([len(u) for u in self.units])
        else:
            separators = sum(len(p) for p, u in self._pieces if u < 0)
            alone = torch.tensor([len(u) for u in self.units]) + separators
        masks = _verification_masks(alone, len(self.base_text))
        checked = self.texts(masks)
        want = self._ids(checked, add_special_tokens=True)  # the one call that checks every mask
        full = want[0]  # row 0 keeps every unit
        P = next((k for k in range(len(full) - len(whole) + 1) if full[k:k + len(whole)] == whole), None)
        if P is None:
            return "the tokenizer's special tokens do not surround the text's tokens"
        prefix, suffix = full[:P], full[P + len(whole):]
        if len(prefix) + len(suffix) != self._num_special:
            return (
                f"the tokenizer adds {len(prefix) + len(suffix)} special tokens around the text but "
                f"reports {self._num_special} for truncation"
            )
        # Each content token is kept by one column of the (n, 2L + 2) table built from the masks
        # in _compose_fast: [unit kept (L) | newline before the unit kept (L) | always | never].
        L = self.num_features
        ids_of, column_of = [], []
        for i, ((_, u), ids) in enumerate(zip(self._pieces, per_piece)):
            if u >= 0:
                column = u
            elif self.unit == "line":
                # the newline before line k is kept when line k and an earlier line are kept
                column = L + self._pieces[i + 1][1]
            else:
                column = 2 * L  # lime keeps every separator
            ids_of += ids
            column_of += [column] * len(ids)
        ids_of.append(int(self.tokenizer.pad_token_id))  # a never-kept last token: N + 1 columns
        column_of.append(2 * L + 1)
        self._cpu_buffers = {
            "ids": torch.tensor(ids_of, dtype=torch.long),
            "column": torch.tensor(column_of, dtype=torch.long),
            "specials": torch.tensor(prefix + suffix + [int(self.tokenizer.pad_token_id)], dtype=torch.long),
            "P": len(prefix),
            "S": len(suffix),
        }
        return self._verify_fast(masks, checked, want)

    def _verify_fast(self, masks: Tensor, texts: list[str], want: list[list[int]]) -> str | None:
        """Compare the fast path with the tokenizer; None when all equal.

        Args:
            masks: ``(m, L)`` bool, from :func:`_verification_masks`.
            texts: their m texts.
            want: the tokenizer's ids of ``texts`` with special tokens, untruncated.
        """
        buffers = self._buffers(torch.device("cpu"))

        def differ(row: int, max_length: int | None, padding: str) -> str:
            return (
                f"re-tokenizing a perturbed text gives tokens the original does not (mask row {row}, text "
                f"{texts[row][:60]!r}, max_length={max_length}, padding={padding!r})"
            )

        # Untruncated, every token of every text, row by row; the short texts (a unit alone)
        # composed apart from the long ones, so no row is padded to the lyrics' length.
        long_rows = masks.sum(1) > 1
        long_rows[:2] = True
        for rows in (long_rows.nonzero()[:, 0], (~long_rows).nonzero()[:, 0]):
            if not len(rows):
                continue
            ids, attention = self._compose_fast(masks[rows], None, None, "longest", buffers)
            kept = attention.bool()
            flat, start = ids[kept].tolist(), 0  # every row's kept tokens, row after row: one read
            for row, length in zip(rows.tolist(), kept.sum(1).tolist()):
                if flat[start : start + length] != want[row]:
                    return differ(row, None, "longest")
                start += length
        # Padding (its side and id) and truncation (its side), as the tokenizer does them,
        # on all units (the longest text), none and a unit alone (rows of different lengths).
        rows = torch.tensor([0, 1, len(masks) - 1])
        max_length, padding = self.max_length, self.padding
        got = self._compose_fast(masks[rows], None, max_length, padding, buffers)
        expected = self._tokenize([texts[row] for row in rows.tolist()], max_length, padding)
        for a, b in zip(got, expected):
            if a.shape != b.shape or not torch.equal(a, b):
                bad = int((a != b).any(1).nonzero()[0, 0]) if a.shape == b.shape else 0
                return differ(int(rows[bad]), max_length, padding)
        return None

    def _buffers(self, device: torch.device) -> dict[str, Any]:
        key = str(device)
        if key not in self._device_buffers:
            cpu = self._cpu_buffers
            self._device_buffers[key] = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in cpu.items()}
        return self._device_buffers[key]

    def _compose_fast(
        self, keep_units: Tensor, bad: Tensor | None, max_length: int | None, padding: str, buf: dict[str, Any]
    ) -> tuple[Tensor, Tensor]:
        """Left-pack the kept tokens of ``keep_units (n, L)``; ``(n, Q)`` ids and attention."""
        device = keep_units.device
        n = keep_units.shape[0]
        P, S = buf["P"], buf["S"]
        # which of the N content tokens (plus a never-kept last one) each row keeps: (n, N + 1)
        counts = keep_units.cumsum(1, dtype=torch.int32)
        earlier = counts > keep_units.int()
        edge = torch.ones_like(keep_units[:, :1])
        table = torch.cat([keep_units, keep_units & earlier, edge, ~edge], 1)  # (n, 2L + 2)
        keep = table.index_select(1, buf["column"])
        # position: how many tokens are kept up to and including each one (int32 halves the
        # traffic of the only (n, N) passes left: this cumsum and the clamp below)
        position = keep.cumsum(1, dtype=torch.int32)
        if max_length is not None:
            # truncation keeps the first (right side) or last (left side) `room` kept tokens;
            # the positions of the kept-after-truncation tokens are then a clamp away
            room = max_length - P - S
            if getattr(self.tokenizer, "truncation_side", "right") == "left":
                position = (position - (position[:, -1:] - room).clamp(min=0)).clamp(min=0)
            else:
                position = position.clamp(max=room)
        lengths = position[:, -1:].long()  # (n, 1) content tokens in the row
        total = lengths + (P + S)
        if padding == "max_length":
            if bad is not None and bool(bad):  # host read; bool masks skip it
                raise ValueError("expected binary (0/1) lyrics masks, got other values")
            Q = max_length
        elif n == 0:
            Q = 0
        else:
            # one host read for the output width (data-dependent) and the binary check
            Q, nonbinary = torch.stack([total.max(), bad.long() if bad is not None else total.new_zeros(())]).tolist()
            if nonbinary:
                raise ValueError("expected binary (0/1) lyrics masks, got other values")
        if getattr(self.tokenizer, "padding_side", "right") == "left":
            offset = Q - total
        else:
            offset = torch.zeros_like(total)
        r = torch.arange(Q, device=device)[None, :] - offset  # (n, Q) position within the row
        j = r - P  # content slot
        in_prefix = (r >= 0) & (r < P)
        in_content = (j >= 0) & (j < lengths)
        k = j - lengths  # suffix slot
        in_suffix = (k >= 0) & (k < S)
        # the token at content slot j is the first one whose rank reaches j + 1
        source = torch.searchsorted(position, (j + 1).clamp(min=1).int()).clamp(max=position.shape[1] - 1)
        content = buf["ids"][source]
        special = buf["specials"][torch.where(in_prefix, r, P + k).clamp(0, P + S)]
        pad = buf["specials"][-1]
        ids = torch.where(in_content, content, torch.where(in_prefix | in_suffix, special, pad))
        attention = (in_prefix | in_content | in_suffix).long()
        return ids, attention
