"""LyricsFactorization against the references: bach-or-bot's lines, lime's IndexedString, the tokenizer."""

import re

import pytest
import torch

tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")
lime_text = pytest.importorskip("lime.lime_text")

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import AutoTokenizer, PreTrainedTokenizerFast  # noqa: E402

from torchlime.music._lyrics import LyricsFactorization  # noqa: E402

CORPUS = [
    "Hello darkness, my old friend",
    "I've come to talk with you again!",
    "Don't stop believin', hold on to that feelin'",
    "la la la la, la la la",
    "We're the 99 problems and the 1 solution",
    "Oh, oh, oh -- baby, baby, baby",
    "Is this the real life? Is this just fantasy?",
    "Caught in a landslide; no escape from reality",
    "It's 3 a.m. and I can't sleep (again)",
    "She said: \"love me, love me, love me\"",
    "Ain't no mountain high enough",
    "Twenty-one guns, 21 guns",
    "You're gonna hear me roar!!!",
    "na-na-na, hey hey hey, goodbye",
    "The 4th of July, '69 summer nights",
    "I'm on the highway to hell...",
    "Every breath you take, every move you make",
    "Let it be, let it be, let it be",
    "Should I stay or should I go now?",
    "Rock'n'roll will never die, never die",
    "Money, money, money -- must be funny",
    "Sweet dreams are made of this",
    "Who am I to disagree? I travel the world",
    "Just a small-town girl, livin' in a lonely world",
    "I will survive, hey, hey",
    "We will, we will rock you",
    "Another one bites the dust",
    "Here comes the sun, doo-doo-doo-doo",
    "Yesterday, all my troubles seemed so far away",
    "Hit me baby one more time",
    "Gimme! Gimme! Gimme! A man after midnight",
    "Smells like teen spirit, 1991",
    "Under pressure, pushing down on me",
    "Take on me (take on me), take me on",
    "Born in the U.S.A., born in the U.S.A.",
    "All you need is love; love is all you need",
    "2 + 2 = 4, minus 1 that's 3, quick maths",
    "Wake me up when September ends",
    "Café con leche, naïve señorita",
    "Don't you forget about me, don't don't don't",
]

LYRICS = (
    "[Verse 1]\n"
    "Hello darkness, my old friend\n"
    "  I've come to talk with you again!  \n"
    "\n"
    "(Instrumental)\n"
    "Don't stop believin', hold on to that feelin'\r\n"
    "la la la la, la la la\n"
    "[Chorus]\n"
    "We're the 99 problems and the 1 solution\n"
    "Oh, oh, oh -- baby, baby, baby\n"
    "It's 3 a.m. and I can't sleep (again)\n"
    "la la la la, la la la\n"
    "Café con leche, naïve señorita\n"
    "Twenty-one guns,   21 guns\n"
    "\n"
)

ANNOTATION = (re.compile(r"^\[.*\]$"), re.compile(r"^\(.*\)$"))


def is_annotation(line):
    return any(p.match(line) for p in ANNOTATION)


def reference_lines(lyrics, drop_annotations=True):
    """bach-or-bot's LineIndexedString: stripped non-empty lines, annotations dropped."""
    lines = [line.strip() for line in lyrics.split("\n")]
    return [line for line in lines if line and not (drop_annotations and is_annotation(line))]


def reference_line_texts(lyrics, masks, drop_annotations=True):
    lines = reference_lines(lyrics, drop_annotations)
    return ["\n".join(line for line, keep in zip(lines, row) if keep) for row in masks.tolist()]


def reference_word_text(lyrics, drop_annotations=True):
    if not drop_annotations:
        return lyrics
    return "\n".join(line for line in lyrics.split("\n") if not is_annotation(line.strip()))


def reference_word_texts(text, masks):
    """The original MusicLIME: lime's IndexedString(bow=True, split_expression=r"\\W+")."""
    indexed = lime_text.IndexedString(text, bow=True, split_expression=r"\W+")
    return [indexed.inverse_removing([i for i, keep in enumerate(row) if not keep]) for row in masks.tolist()]


def bert_tokenizer():
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    tok.train_from_iterator(CORPUS, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )


def bpe_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=500,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")), add_prefix_space=False
    )
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def sentencepiece_tokenizer():
    """T5 style: Unigram over Metaspace, newlines normalized to spaces, "$A </s>"."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.Replace("\n", " "), normalizers.NFKC()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.decoder = decoders.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def prefix_space_bpe_tokenizer():
    """Byte-level BPE that adds a space in front of every text."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    trainer = trainers.BpeTrainer(
        vocab_size=500, special_tokens=["<s>", "<pad>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


@pytest.fixture(scope="module")
def saved_tokenizers(tmp_path_factory):
    """Both tokenizers saved once and loaded back through AutoTokenizer (the real loading code)."""
    paths = {}
    for name, build in [("wordpiece", bert_tokenizer), ("bpe", bpe_tokenizer)]:
        path = tmp_path_factory.mktemp(name)
        build().save_pretrained(path)
        paths[name] = path
    return paths


@pytest.fixture(scope="module")
def loaded(saved_tokenizers):
    return {name: AutoTokenizer.from_pretrained(path) for name, path in saved_tokenizers.items()}


def random_masks(L, n=64, seed=0):
    """Rows at several densities, plus an all-ones and an all-zeros row."""
    g = torch.Generator().manual_seed(seed)
    p = torch.linspace(0.05, 0.95, n)[:, None]
    masks = (torch.rand(n, L, generator=g) < p).float()
    masks[0] = 1
    masks[1] = 0
    return masks


def reference_texts(lyrics, masks, unit, drop_annotations=True):
    if unit == "line":
        return reference_line_texts(lyrics, masks, drop_annotations)
    return reference_word_texts(reference_word_text(lyrics, drop_annotations), masks)


def assert_same_as_tokenizer(f, tok, texts, masks, max_length, padding):
    ids, attention = f.compose(masks)
    want = tok(texts, padding=padding, truncation=max_length is not None, max_length=max_length, return_tensors="pt")
    assert torch.equal(ids, want["input_ids"])
    assert torch.equal(attention, want["attention_mask"])
    return ids, attention


# -- the tokenizers' own behaviour, which the fast path must reproduce ----------------------


@pytest.mark.parametrize("name", ["wordpiece", "bpe"])
@pytest.mark.parametrize("unit", ["line", "word"])
@pytest.mark.parametrize("truncate", [False, True], ids=["full", "truncated"])
@pytest.mark.parametrize("padding", ["longest", "max_length"])
def test_compose_equals_tokenizer_on_reference_texts(loaded, name, unit, truncate, padding):
    tok = loaded[name]
    max_length = 12 if truncate else (256 if padding == "max_length" else None)
    f = LyricsFactorization(LYRICS, tok, unit=unit, max_length=max_length, padding=padding)
    masks = random_masks(f.num_features, seed=len(name) * 4 + len(unit) * 2 + truncate + 7 * (padding == "longest"))
    texts = f.texts(masks)
    assert texts == reference_texts(LYRICS, masks, unit)
    ids, attention = assert_same_as_tokenizer(f, tok, texts, masks, max_length, padding)
    full = tok(texts)["input_ids"]
    if truncate:  # some rows really were cut
        assert max(len(x) for x in full) > max_length
        assert int(attention.sum(1).max()) == max_length
    else:
        assert attention.sum(1).tolist() == [len(x) for x in full]
    if padding == "max_length":
        assert ids.shape == (masks.shape[0], max_length)
    assert ids.dtype == attention.dtype == torch.long


@pytest.mark.parametrize("name", ["wordpiece", "bpe"])
@pytest.mark.parametrize("unit", ["line", "word"])
@pytest.mark.parametrize("drop_annotations", [True, False])
def test_units_and_texts_match_references(loaded, name, unit, drop_annotations):
    f = LyricsFactorization(LYRICS, loaded[name], unit=unit, drop_annotations=drop_annotations)
    if unit == "line":
        assert f.units == reference_lines(LYRICS, drop_annotations)
        assert f.base_text == "\n".join(f.units)
    else:
        text = reference_word_text(LYRICS, drop_annotations)
        indexed = lime_text.IndexedString(text, bow=True, split_expression=r"\W+")
        assert f.units == indexed.inverse_vocab
        assert f.base_text == text
    # names: the unit texts, a repeated line's later occurrences numbered ("la la la la, la la la (2)")
    counts, names = {}, []
    for u in f.units:
        counts[u] = counts.get(u, 0) + 1
        names.append(u if counts[u] == 1 else f"{u} ({counts[u]})")
    assert f.feature_names == names and len(set(names)) == f.num_features == len(f.units)
    assert (unit == "line") == (names != f.units)  # LYRICS repeats one line; words are distinct anyway
    assert f.text == LYRICS and f.unit == unit
    masks = random_masks(f.num_features, n=32, seed=3)
    assert f.texts(masks) == reference_texts(LYRICS, masks, unit, drop_annotations)
    assert f.texts(torch.ones(1, f.num_features))[0] == f.base_text
    if unit == "word" and not drop_annotations:  # exactly MusicLIME's IndexedString on the raw lyrics
        assert f.texts(masks) == reference_word_texts(LYRICS, masks)


@pytest.mark.parametrize(
    "text",
    [
        "plain words only",
        "  leading, and trailing!  ",
        "...punctuation first; then words",
        "snake_case and digits 123 4th 5",
        "Café naïve señorita, 東京 is 東京",
        "emoji 🎸 rock 🎸 roll °C 20°",
        "don't won't can't 'quoted' rock'n'roll",
        "a\n\nb\r\nc\td",
    ],
)
def test_word_units_are_lime_indexed_string(text):
    f = LyricsFactorization(text, unit="word", drop_annotations=False)
    indexed = lime_text.IndexedString(text, bow=True, split_expression=r"\W+")
    assert f.units == indexed.inverse_vocab
    masks = random_masks(f.num_features, n=40, seed=7)
    assert f.texts(masks) == reference_word_texts(text, masks)


# -- which path is taken --------------------------------------------------------------------


def test_fast_path_selection(loaded):
    expected = [("wordpiece", "line", True), ("wordpiece", "word", True), ("bpe", "line", True), ("bpe", "word", False)]
    for name, unit, fast in expected:
        f = LyricsFactorization(LYRICS, loaded[name], unit=unit)
        assert f.fast is fast, (name, unit, f.exact_reason)
        assert (f.exact_reason is None) is fast
    f = LyricsFactorization(LYRICS, loaded["bpe"], unit="word")
    assert "merges text across word boundaries" in f.exact_reason
    f = LyricsFactorization(LYRICS, loaded["wordpiece"], unit="line", exact=True)
    assert not f.fast and "exact=True" in f.exact_reason
    f = LyricsFactorization(LYRICS, loaded["wordpiece"], unit="word", exact=False)
    assert f.fast
    assert "path=fast" in repr(f)
    f = LyricsFactorization(LYRICS)
    assert not f.fast and f.exact_reason == "no tokenizer"


@pytest.mark.parametrize(
    "build, line_fast",
    [(sentencepiece_tokenizer, True), (prefix_space_bpe_tokenizer, False)],
    ids=["sentencepiece", "prefix-space-bpe"],
)
@pytest.mark.parametrize("max_length", [None, 10])
def test_other_families(build, line_fast, max_length):
    """SentencePiece lines are fast (the newline becomes the next line's "▁"), words exact;
    a prefix-space BPE starts the first line differently, so both units are exact."""
    tok = build()
    for unit, fast in [("line", line_fast), ("word", False)]:
        f = LyricsFactorization(LYRICS, tok, unit=unit, max_length=max_length)
        assert f.fast is fast, f.exact_reason
        masks = random_masks(f.num_features, seed=13)
        assert f.texts(masks) == reference_texts(LYRICS, masks, unit)
        assert_same_as_tokenizer(f, tok, f.texts(masks), masks, max_length, "longest")


def test_exact_false_raises_where_fast_is_not_exact(loaded):
    match = r"fast path is exact for with unit='word' \(exact=False\), got one where the tokenizer merges"
    with pytest.raises(ValueError, match=match):
        LyricsFactorization(LYRICS, loaded["bpe"], unit="word", exact=False)


def test_byte_level_words_are_really_not_fast(loaded):
    """Why BPE words need the exact path: dropping a word's tokens is not re-tokenizing."""
    tok = loaded["bpe"]

    def ids(*texts):
        return [t for x in tok(list(texts), add_special_tokens=False)["input_ids"] for t in x]

    # lime's pieces of "love me, love" are love | " " | me | ", " | love; removing "me" keeps the rest
    assert ids("love me, love") != ids("love", " ", "me", ", ", "love")  # "Ġme": the space joins the word
    assert ids("love  , love") != ids("love", " ", ", ", "love")  # spaces and commas re-merge ("Ġ,")


@pytest.mark.parametrize("name", ["wordpiece", "bpe"])
@pytest.mark.parametrize("unit", ["line", "word"])
def test_exact_and_fast_agree(loaded, name, unit):
    tok = loaded[name]
    masks = random_masks(len(LyricsFactorization(LYRICS, unit=unit).units), n=48, seed=11)
    for max_length, padding in [(None, "longest"), (10, "max_length")]:
        slow = LyricsFactorization(LYRICS, tok, unit=unit, exact=True, max_length=max_length, padding=padding)
        auto = LyricsFactorization(LYRICS, tok, unit=unit, max_length=max_length, padding=padding)
        for a, b in zip(slow.compose(masks), auto.compose(masks)):
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["wordpiece", "bpe"])
@pytest.mark.parametrize("unit", ["line", "word"])
def test_left_padding_and_truncation_sides(saved_tokenizers, name, unit):
    tok = AutoTokenizer.from_pretrained(saved_tokenizers[name])
    tok.padding_side = "left"
    tok.truncation_side = "left"
    for max_length, padding in [(None, "longest"), (9, "longest"), (9, "max_length")]:
        f = LyricsFactorization(LYRICS, tok, unit=unit, max_length=max_length, padding=padding)
        assert f.fast is not (name == "bpe" and unit == "word")
        masks = random_masks(f.num_features, seed=5)
        assert_same_as_tokenizer(f, tok, f.texts(masks), masks, max_length, padding)


def test_multibyte_and_emoji_lines_stay_fast(loaded):
    lyrics = "Café 🎸 naïve\n東京 nights 🎶🎶\n¿qué? ¡sí!\nplain line"
    for name in ["wordpiece", "bpe"]:
        f = LyricsFactorization(lyrics, loaded[name])
        assert f.fast, f.exact_reason
        masks = random_masks(f.num_features, n=16, seed=2)
        assert_same_as_tokenizer(f, loaded[name], f.texts(masks), masks, None, "longest")


# -- batching, dtypes, devices --------------------------------------------------------------


@pytest.mark.parametrize("name", ["wordpiece", "bpe"])
@pytest.mark.parametrize("unit", ["line", "word"])
def test_batch_equals_loop(loaded, name, unit):
    f = LyricsFactorization(LYRICS, loaded[name], unit=unit, max_length=14)
    masks = random_masks(f.num_features, n=20, seed=9)
    ids, attention = f.compose(masks)
    for i in range(masks.shape[0]):
        one_ids, one_attention = f.compose(masks[i : i + 1])
        q = one_ids.shape[1]
        assert torch.equal(ids[i, :q], one_ids[0]) and torch.equal(attention[i, :q], one_attention[0])
        assert not attention[i, q:].any()
        assert (ids[i, q:] == loaded[name].pad_token_id).all()


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.int64, torch.float32, torch.float64])
def test_mask_dtypes_agree(loaded, mask_dtype):
    f = LyricsFactorization(LYRICS, loaded["wordpiece"], unit="word", max_length=16, padding="max_length")
    masks = random_masks(f.num_features, n=12, seed=4)
    want = f.compose(masks.bool())
    got = f.compose(masks.to(mask_dtype))
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert f.texts(masks.to(mask_dtype)) == f.texts(masks.bool())


def test_output_device(loaded, device):
    for exact in [None, True]:
        f = LyricsFactorization(LYRICS, loaded["wordpiece"], exact=exact)
        masks = random_masks(f.num_features, n=6).to(device)
        ids, attention = f.compose(masks)
        assert ids.device.type == attention.device.type == device.type
        g = LyricsFactorization(LYRICS, loaded["wordpiece"], exact=exact, device=device)
        ids2, _ = g.compose(masks.cpu())
        assert ids2.device.type == device.type and torch.equal(ids2.cpu(), ids.cpu())


def test_empty_batch(loaded):
    for padding, width in [("longest", 0), ("max_length", 8)]:
        for exact in [None, True]:
            f = LyricsFactorization(LYRICS, loaded["bpe"], max_length=8, padding=padding, exact=exact)
            ids, attention = f.compose(torch.zeros(0, f.num_features))
            assert ids.shape == attention.shape == (0, width)
            assert f.texts(torch.zeros(0, f.num_features)) == []


def test_texts_without_tokenizer():
    f = LyricsFactorization(LYRICS)
    masks = random_masks(f.num_features, n=8)
    assert f.texts(masks) == reference_line_texts(LYRICS, masks)
    with pytest.raises(ValueError, match="expected a tokenizer to compose input ids, got tokenizer=None"):
        f.compose(masks)


# -- errors -----------------------------------------------------------------------------------


def test_lyrics_errors():
    with pytest.raises(TypeError, match="expected lyrics to be a str, got bytes"):
        LyricsFactorization(b"la la")
    with pytest.raises(ValueError, match="expected non-empty lyrics, got an empty or whitespace-only"):
        LyricsFactorization("")
    with pytest.raises(ValueError, match="expected non-empty lyrics, got an empty or whitespace-only"):
        LyricsFactorization(" \n\t\n ")
    match = r"got none after dropping .*2 annotation line\(s\) such as \['\[Chorus\]', '\(Instrumental\)'\]"
    with pytest.raises(ValueError, match="expected at least one lyric line, " + match):
        LyricsFactorization("[Chorus]\n\n(Instrumental)\n")
    with pytest.raises(ValueError, match=r"got none after dropping 1 annotation line\(s\).*drop_annotations=False"):
        LyricsFactorization("[Chorus]\n", unit="word")
    assert LyricsFactorization("[Chorus]\n", drop_annotations=False).units == ["[Chorus]"]
    with pytest.raises(ValueError, match="expected lyrics with at least one word"):
        LyricsFactorization("!!! ... ???", unit="word")


def test_option_errors(loaded):
    with pytest.raises(ValueError, match=r"expected unit in \('line', 'word'\), got 'token'"):
        LyricsFactorization(LYRICS, unit="token")
    with pytest.raises(ValueError, match=r"expected padding in \('longest', 'max_length'\), got 'do_not_pad'"):
        LyricsFactorization(LYRICS, padding="do_not_pad")
    with pytest.raises(ValueError, match="expected a max_length with padding='max_length', got max_length=None"):
        LyricsFactorization(LYRICS, padding="max_length")
    with pytest.raises(TypeError, match="expected max_length to be an int or None, got 3.5"):
        LyricsFactorization(LYRICS, max_length=3.5)
    with pytest.raises(ValueError, match="expected max_length >= 1, got 0"):
        LyricsFactorization(LYRICS, max_length=0)
    with pytest.raises(TypeError, match="expected exact to be None, True or False, got 'yes'"):
        LyricsFactorization(LYRICS, exact="yes")
    with pytest.raises(TypeError, match="expected a callable Hugging Face tokenizer or None, got str"):
        LyricsFactorization(LYRICS, "bert-base-uncased")
    with pytest.raises(ValueError, match="expected a tokenizer with exact=False"):
        LyricsFactorization(LYRICS, exact=False)
    for name in ["wordpiece", "bpe"]:
        match = r"expected max_length >= 3 \(the tokenizer's 2 special tokens plus at least one token of text\), got 2"
        with pytest.raises(ValueError, match=match):
            LyricsFactorization(LYRICS, loaded[name], max_length=2)
        LyricsFactorization(LYRICS, loaded[name], max_length=3)


def test_tokenizer_without_pad_token(saved_tokenizers):
    tok = AutoTokenizer.from_pretrained(saved_tokenizers["bpe"])
    tok.pad_token = None
    with pytest.raises(ValueError, match="expected a tokenizer with a pad token"):
        LyricsFactorization(LYRICS, tok)


@pytest.mark.parametrize("exact", [None, True])
def test_mask_errors(loaded, exact):
    for tok in [None, loaded["wordpiece"]]:
        f = LyricsFactorization(LYRICS, tok, exact=exact if tok is not None else None)
        L = f.num_features
        calls = [f.texts] + ([f.compose] if tok is not None else [])
        for call in calls:
            match = rf"expected lyrics masks of shape \(n, {L}\) \(one column per line\), got shape \(4, {L + 1}\)"
            with pytest.raises(ValueError, match=match):
                call(torch.ones(4, L + 1))
            with pytest.raises(ValueError, match=rf"expected lyrics masks of shape \(n, {L}\).*got shape \({L},\)"):
                call(torch.ones(L))
            with pytest.raises(ValueError, match="expected binary \\(0/1\\) lyrics masks, got other values"):
                call(torch.full((3, L), 0.5))
            with pytest.raises(TypeError, match="expected lyrics masks as a tensor"):
                call(object())
    g = LyricsFactorization(LYRICS, loaded["wordpiece"], max_length=8, padding="max_length")
    with pytest.raises(ValueError, match="expected binary \\(0/1\\) lyrics masks, got other values"):
        g.compose(torch.full((3, g.num_features), 2))


def test_repeated_lines_get_distinct_readable_names():
    f = LyricsFactorization("I'm on fire\nla\n[Chorus]\nI'm on fire\n\nI'm on fire (2)\nI'm on fire")
    assert f.units == ["I'm on fire", "la", "I'm on fire", "I'm on fire (2)", "I'm on fire"]
    # a literal "(2)" line keeps its name; the repeats skip it
    assert f.feature_names == ["I'm on fire", "la", "I'm on fire (3)", "I'm on fire (2)", "I'm on fire (4)"]
    assert f.texts(torch.tensor([[0, 0, 1, 0, 0]])) == ["I'm on fire"]  # a name is not the text


def test_a_byte_order_mark_is_not_part_of_the_first_line(loaded):
    plain = LyricsFactorization("Hello there\nGeneral Kenobi", loaded["wordpiece"])
    bom = LyricsFactorization("\ufeffHello there\nGeneral Kenobi", loaded["wordpiece"])
    assert bom.units == plain.units == ["Hello there", "General Kenobi"] and bom.text == plain.text
    masks = torch.tensor([[1, 1], [1, 0]])
    assert all(torch.equal(a, b) for a, b in zip(bom.compose(masks), plain.compose(masks)))
    words = LyricsFactorization("\ufeffhello hello", unit="word")
    assert words.units == ["hello"] and words.texts(torch.ones(1, 1)) == ["hello hello"]


# -- the fast path's check and long lyrics --------------------------------------------------


def merging_unigram_tokenizer():
    """A Unigram tokenizer with no pre-tokenizer and one token, "x\\nz", that only forms
    when the line between x and z is removed: the whole text tokenizes as its pieces do, so
    only the check on perturbed texts can tell that the fast path is not exact."""
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("x", -2.0), ("y", -2.0), ("z", -2.0), ("\n", -2.0),
             ("x\nz", -1.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def test_the_check_catches_a_merge_only_a_removed_unit_makes():
    tok = merging_unigram_tokenizer()
    assert tok(["x\ny\nz"], add_special_tokens=False)["input_ids"] == [[3, 6, 4, 6, 5]]  # no merge in the song
    assert tok(["x\nz"], add_special_tokens=False)["input_ids"] == [[7]]  # y removed: one token
    f = LyricsFactorization("x\ny\nz", tok)
    assert not f.fast
    assert f.exact_reason.startswith("re-tokenizing a perturbed text gives tokens the original does not")
    masks = torch.tensor([[1, 0, 1], [1, 1, 1], [0, 1, 1]])
    assert_same_as_tokenizer(f, tok, f.texts(masks), masks, None, "longest")
    # a longer song: x and z three lines apart meet when every third line is kept alone
    g = LyricsFactorization("x\ny\ny\nz\ny", tok)
    assert not g.fast and "re-tokenizing a perturbed text" in g.exact_reason


class CountingTokenizer:
    """A tokenizer proxy that records the characters of every call (the work it is given)."""

    def __init__(self, tok):
        self.tok, self.calls = tok, []

    def __call__(self, texts, **kwargs):
        self.calls.append(sum(len(t) for t in texts))
        return self.tok(texts, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tok, name)


def long_lyrics(lines):
    return "\n".join(f"{CORPUS[i % len(CORPUS)]} ({i})" if i % 7 else CORPUS[i % len(CORPUS)] for i in range(lines))


@pytest.mark.parametrize("name, unit", [("wordpiece", "line"), ("wordpiece", "word"), ("bpe", "line")])
def test_long_lyrics_check_grows_linearly(loaded, name, unit):
    """The check tokenizes a few times the lyrics in three calls, whatever their length (it
    was every unit off one by one: 2,000 lines took 75 s and 3 GB); a 2,000-line song then
    composes the same ids as the tokenizer."""
    for lines in [40, 2000]:
        tok = CountingTokenizer(loaded[name])
        f = LyricsFactorization(long_lyrics(lines), tok, unit=unit, max_length=64)
        assert f.fast, f.exact_reason
        assert len(tok.calls) == 3
        # the pieces and the whole text (2x), the checked masks (about 5.5x; words keep every
        # separator in every mask, about 7x), three of them padded (1x, words 2.5x)
        assert sum(tok.calls) <= (9 if unit == "line" else 12) * len(f.base_text), sum(tok.calls) / len(f.base_text)
    masks = random_masks(f.num_features, n=6, seed=1)
    assert_same_as_tokenizer(f, loaded[name], f.texts(masks), masks, 64, "longest")


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("max_length, padding", [(None, "longest"), (40, "longest"), (40, "max_length")])
def test_exact_path_tokenizes_long_batches_in_groups(saved_tokenizers, monkeypatch, side, max_length, padding):
    """The exact path hands the tokenizer at most _TOKENIZE_CHARS characters per call (its
    memory per token is many times the output's) and pads the groups as one call would."""
    from torchlime.music import _lyrics

    monkeypatch.setattr(_lyrics, "_TOKENIZE_CHARS", 300)
    tok = AutoTokenizer.from_pretrained(saved_tokenizers["bpe"])
    tok.padding_side = side
    counting = CountingTokenizer(tok)
    f = LyricsFactorization(LYRICS, counting, unit="word", max_length=max_length, padding=padding)
    assert not f.fast
    masks = random_masks(f.num_features, n=24, seed=8)
    counting.calls.clear()
    assert_same_as_tokenizer(f, tok, f.texts(masks), masks, max_length, padding)
    assert len(counting.calls) > 3 and max(counting.calls) <= 300 + len(f.base_text)


def test_the_check_is_remembered_per_tokenizer_lyrics_and_settings(loaded):
    """A song set up again skips the check's tokenizer calls; a different setting, a changed
    padding side or an added token checks anew, and every path still equals the tokenizer."""
    lyrics = "\n".join(CORPUS[:6])
    tok = CountingTokenizer(loaded["wordpiece"])
    masks = random_masks(6, n=16, seed=3)
    first = LyricsFactorization(lyrics, tok, max_length=24)
    assert first.fast and len(tok.calls) == 3
    again = LyricsFactorization(lyrics, tok, max_length=24)
    assert again.fast and len(tok.calls) == 3  # no tokenizer call: the check was remembered
    assert_same_as_tokenizer(again, tok.tok, again.texts(masks), masks, 24, "longest")
    LyricsFactorization(lyrics, tok, max_length=16)  # another max_length: checked
    assert len(tok.calls) == 6
    LyricsFactorization(lyrics + "\nand one more line", tok, max_length=24)  # other lyrics: checked
    assert len(tok.calls) == 9
    tok.tok.padding_side = "left"
    try:
        left = LyricsFactorization(lyrics, tok, max_length=24)  # the padding side changed: checked
        assert len(tok.calls) == 12
        assert_same_as_tokenizer(left, tok.tok, left.texts(masks), masks, 24, "longest")
    finally:
        tok.tok.padding_side = "right"
    # a tokenizer of its own (a token added changes the vocabulary size): checked
    grown = CountingTokenizer(bert_tokenizer())
    LyricsFactorization(lyrics, grown, max_length=24)
    grown.tok.add_tokens(["zzyzx"])
    LyricsFactorization(lyrics, grown, max_length=24)
    assert len(grown.calls) == 6


def test_a_remembered_failure_gives_the_same_reason():
    tok = CountingTokenizer(merging_unigram_tokenizer())
    f = LyricsFactorization("x\ny\nz", tok)
    calls = len(tok.calls)
    g = LyricsFactorization("x\ny\nz", tok)
    assert len(tok.calls) == calls
    assert not g.fast and g.exact_reason == f.exact_reason
    assert g.exact_reason.startswith("re-tokenizing a perturbed text gives tokens the original does not")
    with pytest.raises(ValueError, match="expected a tokenizer the fast path is exact for"):
        LyricsFactorization("x\ny\nz", tok, exact=False)
