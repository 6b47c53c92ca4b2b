"""The binding probe finds the object list's colour and shape words (not the relation's), in order."""
from unidiff.eval.caption_binding import _word_slots
from unidiff.tokenize.text import TextTokenizer
from unidiff_envs.tabletop.language import _CELL_PHRASE
from unidiff_envs.tabletop.scene import COLORS, SHAPES


def test_word_slots_are_the_listed_colours_and_shapes_in_order():
    texts = [f"there is a {c} {s} {p} and a {c2} {s} {p}. the {c} {s} is left of the {c2} {s}."
             for c in COLORS for c2 in COLORS for s in SHAPES for p in _CELL_PHRASE.values()]
    tok = TextTokenizer.train(texts, vocab_size=640)
    caption = "there is a red cube in the top left and a blue ball on the right. the red cube is left of the blue ball."
    ids, slots = _word_slots(tok, caption, n_objects=2)
    assert [(tok.decode([ids[j]]).strip(), kind) for j, kind in slots] == [
        ("red", "colour"), ("cube", "shape"), ("blue", "colour"), ("ball", "shape")]
    assert slots[-1][0] < [tok.decode([i]).strip() for i in ids].index(".")  # none from the relation sentence
    _, one = _word_slots(tok, caption, n_objects=1)
    assert [kind for _, kind in one] == ["colour", "shape"]
