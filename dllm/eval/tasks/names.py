"""Vocabularies for the list tasks, written for this project.

* ``FIRST_NAMES`` / ``LAST_NAMES``: 60 common given names and 60 common surnames.  Waiting-line
  items are full names ``"First Last"`` drawn from their product (3,600 names), as in ParallelBench,
  whose customers are first x last name products.  The two lists share no entry.
* ``LETTERS``: the 26 capital letters.
* ``WORDS``: 46 common lowercase English nouns (none equals a surname in lower case).

Every name is short and common so that the shipped tokenizer (``dllm.zoo.tokenizer``) can keep each
one as a single token (with its leading space).
"""

from __future__ import annotations

import string

FIRST_NAMES: tuple[str, ...] = (
    "Adam", "Alice", "Amy", "Anna", "Ava", "Ben", "Carl", "Chloe", "Clara", "Daniel",
    "David", "Dylan", "Eli", "Ella", "Emma", "Eric", "Ethan", "Eva", "Felix", "Grace",
    "Hannah", "Henry", "Hugo", "Iris", "Isaac", "Ivy", "Jack", "Jacob", "James", "Jane",
    "Julia", "Kate", "Laura", "Leah", "Leo", "Liam", "Lily", "Lucas", "Luke", "Maria",
    "Mark", "Max", "Mia", "Nina", "Noah", "Nora", "Olivia", "Oscar", "Owen", "Paul",
    "Peter", "Rose", "Ruby", "Ryan", "Sam", "Sara", "Sophie", "Tom", "Victor", "Zoe",
)

LAST_NAMES: tuple[str, ...] = (
    "Adams", "Allen", "Baker", "Bell", "Black", "Blake", "Brown", "Burke", "Chen", "Clark",
    "Cole", "Cook", "Davis", "Diaz", "Dunn", "Fisher", "Ford", "Fox", "Frost", "Gray",
    "Green", "Hall", "Hart", "Hayes", "Hill", "Hunt", "Jones", "Kim", "King", "Lane",
    "Lopez", "Lowe", "Marsh", "Miller", "Moore", "Nash", "Nelson", "Park", "Patel", "Pike",
    "Price", "Reed", "Rice", "Ross", "Scott", "Shaw", "Smith", "Stone", "Taylor", "Walsh",
    "Ward", "Webb", "Wells", "West", "Wilson", "Wood", "Wright", "Young", "Singh", "Lee",
)

FULL_NAMES: tuple[str, ...] = tuple(f"{f} {l}" for f in FIRST_NAMES for l in LAST_NAMES)

LETTERS: tuple[str, ...] = tuple(string.ascii_uppercase)

WORDS: tuple[str, ...] = (
    "apple", "bread", "chair", "cloud", "dog", "door", "egg", "field", "fish", "flower",
    "garden", "glass", "horse", "house", "island", "kite", "lamp", "lemon", "moon", "mountain",
    "needle", "ocean", "orange", "paper", "pencil", "piano", "pillow", "planet", "queen", "rabbit",
    "river", "road", "shoe", "snow", "star", "sun", "table", "tiger", "train", "tree",
    "umbrella", "violin", "water", "window", "yacht", "zebra",
)

# Symbols a Latin square may use (ParallelBench draws from A-Z and 0-9).
LATIN_SYMBOLS: tuple[str, ...] = tuple(string.ascii_uppercase + string.digits)

assert len(set(FIRST_NAMES)) == len(FIRST_NAMES) == 60
assert len(set(LAST_NAMES)) == len(LAST_NAMES) == 60
assert not set(FIRST_NAMES) & set(LAST_NAMES)
assert not {w.capitalize() for w in WORDS} & (set(FIRST_NAMES) | set(LAST_NAMES))
