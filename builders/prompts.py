"""The paper's Table 1 as data: the prompt modifiers of each CIFAR-10 class.

Every prompt reads "a photograph of a/an <phrase>", the phrase putting the modifier where
English puts it ("a fire truck", "a bird in a tree", "a herd of deer"). Where a modifier is
itself a noun for the class ("jet", "lorry", "sailboat") it replaces the class noun. Within
a class the modifiers are used in turn, so their counts differ by at most one.
"""

from __future__ import annotations

from collections import Counter

from cifake_hub.schema import CLASS_NAMES

PREFIX = "a photograph of"

# class -> ((modifier as in Table 1, phrase without article), ...)
TABLE_1: dict[str, tuple[tuple[str, str], ...]] = {
    "airplane": (
        ("aircraft", "aircraft"),
        ("airplane", "airplane"),
        ("fighter", "fighter plane"),
        ("flying", "flying airplane"),
        ("jet", "jet"),
        ("plane", "plane"),
    ),
    "automobile": (
        ("family", "family automobile"),
        ("new", "new automobile"),
        ("sports", "sports car"),
        ("vintage", "vintage automobile"),
    ),
    "bird": (
        ("flying", "flying bird"),
        ("in a tree", "bird in a tree"),
        ("indoors", "bird indoors"),
        ("on water", "bird on water"),
        ("outdoors", "bird outdoors"),
        ("walking", "walking bird"),
    ),
    "cat": (
        ("indoors", "cat indoors"),
        ("outdoors", "cat outdoors"),
        ("walking", "walking cat"),
        ("running", "running cat"),
        ("eating", "eating cat"),
        ("jumping", "jumping cat"),
        ("sleeping", "sleeping cat"),
        ("sitting", "sitting cat"),
    ),
    "deer": (
        ("herd", "herd of deer"),
        ("in a field", "deer in a field"),
        ("in the forest", "deer in the forest"),
        ("outdoors", "deer outdoors"),
        ("running", "running deer"),
        ("wildlife photography", "deer, wildlife photography"),
    ),
    "dog": (
        ("indoors", "dog indoors"),
        ("outdoors", "dog outdoors"),
        ("walking", "walking dog"),
        ("running", "running dog"),
        ("eating", "eating dog"),
        ("jumping", "jumping dog"),
        ("sleeping", "sleeping dog"),
        ("sitting", "sitting dog"),
    ),
    "frog": (
        ("European", "European frog"),
        ("in the forest", "frog in the forest"),
        ("on a tree", "frog on a tree"),
        ("on the ground", "frog on the ground"),
        ("swimming", "swimming frog"),
        ("tropical", "tropical frog"),
        ("wildlife photography", "frog, wildlife photography"),
    ),
    "horse": (
        ("herd", "herd of horses"),
        ("in a field", "horse in a field"),
        ("in the forest", "horse in the forest"),
        ("outdoors", "horse outdoors"),
        ("running", "running horse"),
        ("wildlife photography", "horse, wildlife photography"),
    ),
    "ship": (
        ("at sea", "ship at sea"),
        ("boat", "boat"),
        ("cargo", "cargo ship"),
        ("cruise", "cruise ship"),
        ("on the water", "ship on the water"),
        ("river", "river boat"),
        ("sailboat", "sailboat"),
        ("tug", "tugboat"),
    ),
    "truck": (
        ("18-wheeler", "18-wheeler truck"),
        ("car transport", "car transport truck"),
        ("fire", "fire truck"),
        ("garbage", "garbage truck"),
        ("heavy goods", "heavy goods truck"),
        ("lorry", "lorry"),
        ("mining", "mining truck"),
        ("tanker", "tanker truck"),
        ("tow", "tow truck"),
    ),
}

# Letters that are written as vowels but sound like consonants, and numbers that sound
# like vowels ("an 18-wheeler", "an 8-seater", "an 11-...").
_CONSONANT_SOUND = ("eu", "uni", "use", "one")
_VOWEL_NUMBERS = ("8", "11", "18")


def article(phrase: str) -> str:
    """'a' or 'an' for ``phrase`` by how its first word sounds."""
    word = phrase.lower()
    if word[:1].isdigit():
        return "an" if word.startswith(_VOWEL_NUMBERS) else "a"
    if word.startswith(_CONSONANT_SOUND):
        return "a"
    return "an" if word[:1] in "aeiou" else "a"


def prompt_for(category: int, index: int) -> str:
    """The prompt of image ``index`` of class ``category`` (modifiers taken in turn)."""
    phrases = TABLE_1[CLASS_NAMES[category]]
    phrase = phrases[index % len(phrases)][1]
    return f"{PREFIX} {article(phrase)} {phrase}"


def prompt_counts(category: int, n: int) -> Counter[str]:
    """How many of ``n`` images of ``category`` get each prompt."""
    return Counter(prompt_for(category, i) for i in range(n))
