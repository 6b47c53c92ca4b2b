import pytest

from unidiff.tokenize import load_tokenizers, save_tokenizers
from unidiff.tokenize.text import TextTokenizer
from unidiff.vocab import EOS_ID, NUM_SPECIALS, PAD_ID, SPECIALS

CAPTIONS = [
    "two objects: a red cube on the left and a blue ball at the top.",
    "push the green cylinder to the right of the yellow cube",
    "three objects: a purple ball in the top left, a red cylinder at the bottom and a green cube.",
] * 20


@pytest.fixture(scope="module")
def tok():
    return TextTokenizer.train(CAPTIONS, vocab_size=400)


def test_specials_are_joint_ids(tok):
    for i, s in enumerate(SPECIALS):
        assert tok.hf.token_to_id(s) == i
    assert tok.vocab_size == tok.hf.get_vocab_size() - NUM_SPECIALS
    assert min(tok.encode(CAPTIONS[0])) >= NUM_SPECIALS  # encode adds no specials


@pytest.mark.parametrize("s", [CAPTIONS[0], "Unseen WORDS, digits 0123 & symbols ~`|{}\t\n", "", "  spaces  "])
def test_ascii_round_trip(tok, s):
    assert tok.decode(tok.encode(s)) == s


def test_any_string_encodes(tok):
    s = "ünïcødé 日本語 🤖 [MASK_TEXT]"
    ids = tok.encode(s)
    assert all(i >= NUM_SPECIALS for i in ids)  # special-looking text is not a special
    assert tok.decode(ids) == s


def test_decode_stops_at_eos_and_skips_pad(tok):
    ids = tok.encode("a red cube") + [EOS_ID] + tok.encode("junk") + [PAD_ID]
    assert tok.decode(ids) == "a red cube"
    assert tok.decode([PAD_ID] + tok.encode("ball") + [PAD_ID, PAD_ID]) == "ball"


def test_bad_input(tok):
    with pytest.raises(TypeError, match="expected a str"):
        tok.encode(3)
    with pytest.raises(ValueError, match="text ids must lie in"):
        tok.decode([10**6])


def test_save_load_identical(tok, tmp_path):
    save_tokenizers(tmp_path / "tokenizers", {"text": tok})
    assert (tmp_path / "tokenizers" / "text" / "tokenizer.json").is_file()
    back = load_tokenizers(tmp_path / "tokenizers")["text"]
    for s in CAPTIONS[:3] + ["new text!"]:
        assert back.encode(s) == tok.encode(s)
    assert back.vocab_size == tok.vocab_size
