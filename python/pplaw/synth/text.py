"""Text generators of the synthetic world: knowledge bases and documents of each kind.

Everything here is pure Python and seeded: the same (config, seed) gives byte-identical text. Each
generator draws from its own ``random.Random`` stream (seeded from a string, which Python hashes with
SHA-512, so streams are stable across runs and platforms), so changing one part of the world does not
reshuffle the others.

The world (see ``pplaw/synth/__init__.py`` for why it is shaped this way):

- General knowledge (the base model learns it): invented people, cities and countries with a few
  relations each (home city, job, pet, favourite food, capital), plus fixed truisms about real words
  (animals, body parts, symptoms, medicine forms) so those words are familiar to the base model.
- Domain knowledge, two fact sets about invented drugs and diseases:
  * learnable (kind ``learnable``): short sentences built from general-corpus words around new names
    ("zorvimab is used to treat kelosis."), each fact repeated across many documents;
  * hard (kind ``hard``): long sentences of new jargon around three-way relation chains
    (drug -> isoenzyme -> inhibiting drug, dose, second-line use after a learnable drug), fewer
    repetitions per fact.
- Redundant domain text (kind ``redundant``): documents of the general generator (known facts).
- Noise (kind ``noise``): word salad over the whole vocabulary and random character strings.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field

from pplaw.exceptions import ConfigError

KINDS = ("redundant", "learnable", "hard", "noise")

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"

# Real words that the general corpus makes familiar (some are reused by the learnable domain templates).
JOBS = ["baker", "farmer", "teacher", "driver", "painter", "singer", "tailor", "builder", "sailor", "cook"]
PETS = ["dog", "cat", "horse", "goat", "bird", "rabbit", "fish", "duck"]
FOODS = ["bread", "rice", "apples", "soup", "cheese", "beans", "honey", "eggs", "plums", "corn"]
ANIMAL_COLOUR = {"dog": "brown", "cat": "black", "horse": "white", "goat": "grey", "bird": "yellow",
                 "rabbit": "white", "fish": "silver", "duck": "green"}
ANIMAL_SOUND = {"dog": "barks", "cat": "purrs", "horse": "neighs", "goat": "bleats", "bird": "sings",
                "rabbit": "hops", "fish": "swims", "duck": "quacks"}
ORGANS = {"heart": "pumps blood", "lungs": "help us breathe", "liver": "cleans the blood",
          "kidneys": "make urine", "skin": "covers the body", "brain": "helps us think",
          "stomach": "digests food", "bones": "hold up the body", "eyes": "help us see", "blood": "carries air"}
SYMPTOMS = ["fever", "headache", "cough", "rash", "nausea", "tiredness", "dizziness", "pain", "itching", "swelling"]
FORMS = ["tablet", "injection", "cream", "syrup", "spray", "capsule"]
TRUISMS = [
    "the sun rises in the morning.", "water is wet.", "snow is cold.", "fire is hot.", "the sky is blue.",
    "grass is green.", "a week has seven days.", "the night is dark.", "rain falls from the clouds.",
    "a doctor helps sick people.", "a nurse works in a clinic.", "people sleep at night.",
    "children go to school.", "a market sells food.", "a medicine can make people well.",
]

# Everyday health knowledge of the general corpus, told with the same templates as the learnable domain
# facts: remedy -> (ailment it treats, symptom it can cause, form); ailment -> organ. The base model thus
# knows the learnable facts' wording, and only their new names are surprising (medium PPL).
HEALTH_REMEDY = {"honey": ("cough", "nausea", "syrup"), "ginger": ("nausea", "rash", "tablet"),
                 "mint": ("headache", "itching", "cream"), "garlic": ("fever", "nausea", "capsule"),
                 "lemon": ("cold", "itching", "syrup"), "aloe": ("sunburn", "rash", "cream"),
                 "willow": ("pain", "dizziness", "tablet"), "salt": ("swelling", "tiredness", "spray"),
                 "ice": ("swelling", "pain", "spray"), "tea": ("tiredness", "dizziness", "syrup")}
HEALTH_ORGAN = {"cough": "lungs", "nausea": "stomach", "headache": "brain", "fever": "blood", "cold": "lungs",
                "sunburn": "skin", "pain": "bones", "swelling": "skin", "tiredness": "heart"}
RARE_JARGON = 0.001  # share of general sentences in the hard facts' wording
FRESH_SUFFIXES = ["", "o", "a", "ton", "ville", "ia", "land", "us", "ine", "ol", "an", "ix", "ium", "itis", "mab",
                  "osis", "ide", "ex"]
OPEN_TEMPLATES = ["a traveller named {name} came to {city}.", "{name} is a small village in {country}.",
                  "the shop of {name} sells {food}.", "{p} met a friend named {name} in {city}.",
                  "{name} is {n} years old.", "the market in {city} opens at {n}.", "{p} bought {n} {food}."]

# Jargon of the hard domain facts: never appears in the general corpus (new words, so high PPL).
HARD_DOSES = ["5", "10", "15", "20", "25", "40", "50", "75", "100", "150", "200", "250", "300", "500"]


@dataclass
class GeneralKB:
    """Invented general entities and their (consistent) relations."""

    countries: list[str]
    capital: dict[str, str]          # country -> city
    city_country: dict[str, str]     # city -> country
    people: list[str]
    home: dict[str, str]             # person -> city
    job: dict[str, str]
    pet: dict[str, str]
    food: dict[str, str]


@dataclass
class DomainKB:
    """Invented drugs/diseases. ``learnable`` facts are about ``drugs``; ``hard`` facts about ``hard_drugs``."""

    diseases: list[str]
    organ: dict[str, str]            # disease -> organ
    drugs: list[str]
    treats: dict[str, str]           # drug -> disease
    side_effect: dict[str, str]      # drug -> symptom
    form: dict[str, str]             # drug -> form
    enzymes: list[str]
    inhibitor: dict[str, str]        # enzyme -> (learnable) drug that inhibits it
    hard_drugs: list[str]
    enzyme: dict[str, str]           # hard drug -> enzyme
    dose: dict[str, str]             # hard drug -> dose in mg
    second_line: dict[str, str]      # hard drug -> disease it is reserved for (after that disease's first-line drug)
    first_line: dict[str, str] = field(default_factory=dict)  # disease -> first learnable drug treating it
    # Popularity of each drug in text (a Zipf law over the list order, which is random): how often documents
    # (corpus, held-out text) name it. Lists parallel to ``drugs`` / ``hard_drugs``; they sum to 1 each.
    drug_weight: list[float] = field(default_factory=list)
    hard_weight: list[float] = field(default_factory=list)


def zipf_weights(n: int, exponent: float) -> list[float]:
    """Normalised Zipf weights ``k**-exponent`` for ranks k = 1..n (``exponent`` 0: uniform)."""
    w = [(k + 1) ** -exponent for k in range(n)]
    total = sum(w)
    return [x / total for x in w]


def weighted_sample(rng: random.Random, items: list[str], weights: list[float], k: int) -> list[str]:
    """``k`` distinct items drawn with probability proportional to ``weights`` (Efraimidis-Spirakis keys
    ``u**(1/w)``: the top-k keys are a weighted sample without replacement)."""
    keys = sorted(((rng.random() ** (1.0 / w), i) for i, w in enumerate(weights)), reverse=True)
    return [items[i] for _, i in keys[:k]]


def stream(seed: int, name: str) -> random.Random:
    """An independent, reproducible random stream for one part of the world."""
    return random.Random(f"pplaw.synth:{seed}:{name}")


def _names(rng: random.Random, n: int, syllables: tuple[int, int], suffixes: list[str], taken: set[str]) -> list[str]:
    """``n`` unique invented words: CV(C) syllables plus a suffix, none in ``taken`` (updated in place)."""
    out: list[str] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 100_000:  # only with absurd sizes; say so instead of looping forever
            raise ConfigError(f"cannot invent {n} unique names with {syllables} syllables; lower the world's "
                              "entity counts (n_people, n_drugs, ...)")
        k = rng.randint(*syllables)
        word = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS)
                       + (rng.choice("nrsl") if rng.random() < 0.2 else "") for _ in range(k))
        word += rng.choice(suffixes) if suffixes else ""
        if word not in taken:
            taken.add(word)
            out.append(word)
    return out


def make_general_kb(seed: int, n_countries: int, n_cities: int, n_people: int, taken: set[str]) -> GeneralKB:
    rng = stream(seed, "general-kb")
    countries = _names(rng, n_countries, (2, 2), ["ia", "land", "stan"], taken)
    cities = _names(rng, n_cities, (2, 2), ["ton", "ville", "burg", "port"], taken)
    city_country = {c: countries[i % n_countries] for i, c in enumerate(cities)}
    capital = {country: cities[i] for i, country in enumerate(countries)}  # the first city of each country
    people = _names(rng, n_people, (2, 2), ["", "o", "a"], taken)
    return GeneralKB(
        countries=countries, capital=capital, city_country=city_country, people=people,
        home={p: rng.choice(cities) for p in people}, job={p: rng.choice(JOBS) for p in people},
        pet={p: rng.choice(PETS) for p in people}, food={p: rng.choice(FOODS) for p in people},
    )


def make_domain_kb(seed: int, n_diseases: int, n_drugs: int, n_hard_drugs: int, n_enzymes: int,
                   taken: set[str], zipf: float = 0.0) -> DomainKB:
    rng = stream(seed, "domain-kb")
    diseases = _names(rng, n_diseases, (2, 2), ["itis", "osis", "emia", "oma", "algia"], taken)
    drugs = _names(rng, n_drugs, (2, 2), ["mab", "nib", "pril", "lol", "vir", "zole", "cin", "tide"], taken)
    hard_drugs = _names(rng, n_hard_drugs, (3, 3), ["ximab", "tinib", "sartan", "dronate", "previr", "azepam"], taken)
    enzymes = []
    while len(enzymes) < n_enzymes:  # isoenzyme codes like "kv3t": letters and a digit, BPE splits them
        code = _fresh_code(rng)
        if code not in taken:
            taken.add(code)
            enzymes.append(code)
    # Every disease has at least one learnable drug (round robin), so the hard "second line" chain is defined.
    order = diseases * (n_drugs // n_diseases + 1)
    treats = {d: order[i] for i, d in enumerate(drugs)}
    first_line: dict[str, str] = {}
    for d in drugs:
        first_line.setdefault(treats[d], d)
    treated = sorted(first_line, key=diseases.index)
    return DomainKB(
        diseases=diseases, organ={d: rng.choice(list(ORGANS)) for d in diseases},
        drugs=drugs, treats=treats, side_effect={d: rng.choice(SYMPTOMS) for d in drugs},
        form={d: rng.choice(FORMS) for d in drugs},
        enzymes=enzymes, inhibitor={e: rng.choice(drugs) for e in enzymes},
        hard_drugs=hard_drugs, enzyme={h: rng.choice(enzymes) for h in hard_drugs},
        dose={h: rng.choice(HARD_DOSES) for h in hard_drugs},
        second_line={h: rng.choice(treated) for h in hard_drugs}, first_line=first_line,
        drug_weight=zipf_weights(n_drugs, zipf), hard_weight=zipf_weights(n_hard_drugs, zipf),
    )


# --- templates -------------------------------------------------------------------------------------------
# The first template of each relation is the canonical one; the multiple-choice stems reuse its prefix
# (the part before the answer), so a question asks for a fact in words the corpus uses.

GENERAL_TEMPLATES = {
    "home": ["{p} lives in {city}.", "the home of {p} is in {city}.", "{p} has a house in {city}."],
    "job": ["{p} works as a {job}.", "{p} is a {job}.", "every day {p} works as a {job}."],
    "pet": ["{p} has a pet {pet}.", "the pet of {p} is a {pet}.", "{p} takes care of a {pet}."],
    "food": ["{p} likes to eat {food}.", "the favourite food of {p} is {food}.", "{p} often eats {food}."],
    "capital": ["the capital of {country} is {city}.", "{city} is the capital of {country}."],
    "city": ["{city} is a city in {country}.", "{city} lies in {country}.", "the city of {city} is in {country}."],
}

LEARNABLE_TEMPLATES = {
    "treats": ["{drug} is used to treat {disease}.", "doctors give {drug} to people with {disease}.",
               "people with {disease} can take {drug}."],
    "side_effect": ["{drug} can cause {symptom}.", "a side effect of {drug} is {symptom}.",
                    "some people get {symptom} from {drug}."],
    "form": ["{drug} is given as a {form}.", "{drug} comes as a {form}.", "you can get {drug} as a {form}."],
    "organ": ["{disease} is a disease of the {organ}.", "{disease} hurts the {organ}.",
              "people with {disease} have a sick {organ}."],
}

HARD_TEMPLATES = {
    "enzyme": ["{hard} is cleared by {enzyme}.", "{hard}: substrate of {enzyme}.", "{enzyme} clears {hard}."],
    "inhibitor": ["{enzyme} is blocked by {inhibitor}.", "{inhibitor} blocks {enzyme}, so {hard} builds up.",
                  "{hard} with {inhibitor}: {enzyme} blocked."],
    "dose": ["the daily dose of {hard} is {dose} mg.", "{hard}: {dose} mg daily.", "{hard} {dose} mg once a day."],
    "second_line": ["{hard} is second line for {disease} after {first}.", "{disease}: {first} first, then {hard}.",
                    "if {first} fails in {disease}, use {hard}."],
}


def general_facts(kb: GeneralKB, person: str) -> list[tuple[str, dict[str, str]]]:
    return [("home", {"p": person, "city": kb.home[person]}), ("job", {"p": person, "job": kb.job[person]}),
            ("pet", {"p": person, "pet": kb.pet[person]}), ("food", {"p": person, "food": kb.food[person]})]


def _truism(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.4:
        return rng.choice(TRUISMS)
    animal = rng.choice(PETS)
    if r < 0.6:
        return f"the {animal} is {ANIMAL_COLOUR[animal]}."
    if r < 0.75:
        return f"the {animal} {ANIMAL_SOUND[animal]}."
    organ = rng.choice(list(ORGANS))
    if r < 0.9:
        return f"the {organ} {ORGANS[organ]}."
    return f"a {rng.choice(SYMPTOMS)} can be treated with a {rng.choice(FORMS)}."


def _fresh_code(rng: random.Random) -> str:
    """An isoenzyme-like code such as "kv3t"."""
    letters = "bdfgkmprtvz"
    return rng.choice(letters) + rng.choice(letters) + str(rng.randint(1, 9)) + rng.choice(string.ascii_lowercase)


def _fresh_name(rng: random.Random) -> str:
    """A one-off invented name: the general corpus has an open class of names, as real text does, so the
    base model expects unseen names to occur (and is not infinitely surprised by the domain's new names)."""
    k = rng.randint(2, 3)
    word = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(k))
    return word + rng.choice(FRESH_SUFFIXES)


def _open_class(kb: GeneralKB, rng: random.Random, reserved: frozenset[str]) -> str:
    name = _fresh_name(rng)
    while name in reserved:  # never a world entity: a one-off name must not state facts about one
        name = _fresh_name(rng)
    city, country = rng.choice(list(kb.city_country)), rng.choice(kb.countries)
    return rng.choice(OPEN_TEMPLATES).format(name=name, city=city, country=country, p=rng.choice(kb.people),
                                             food=rng.choice(FOODS), n=rng.randint(2, 99))


def _health(rng: random.Random) -> str:
    remedy = rng.choice(list(HEALTH_REMEDY))
    ailment, symptom, form = HEALTH_REMEDY[remedy]
    rel = rng.choice(list(LEARNABLE_TEMPLATES))
    slots = {"drug": remedy, "disease": ailment, "symptom": symptom, "form": form, "organ": HEALTH_ORGAN[ailment]}
    return rng.choice(LEARNABLE_TEMPLATES[rel]).format(**slots)


def _textbook(rng: random.Random) -> str:
    """A rare pharmacology sentence about everyday remedies (random, not a fact): the hard domain facts'
    wording is rare in the general corpus, not absent, so it is surprising but not infinitely so."""
    remedy, other = rng.sample(list(HEALTH_REMEDY), 2)
    slots = {"hard": remedy, "inhibitor": other, "first": other, "enzyme": _fresh_code(rng),
             "dose": str(rng.randint(1, 60) * 5), "disease": rng.choice(list(HEALTH_ORGAN))}
    return rng.choice(rng.choice(list(HARD_TEMPLATES.values()))).format(**slots)


def general_doc(kb: GeneralKB, rng: random.Random, n_sentences: int, reserved: frozenset[str] = frozenset()) -> str:
    """One general document: facts about people and places, everyday health facts, one-off names, truisms."""
    out: list[str] = []
    while len(out) < n_sentences:
        r = rng.random()
        if r < 0.4:
            person = rng.choice(kb.people)
            facts = general_facts(kb, person)
            rng.shuffle(facts)
            for rel, slots in facts[: rng.randint(2, 4)]:
                out.append(rng.choice(GENERAL_TEMPLATES[rel]).format(**slots))
        elif r < 0.55:
            country = rng.choice(kb.countries)
            if rng.random() < 0.5:
                out.append(rng.choice(GENERAL_TEMPLATES["capital"]).format(country=country, city=kb.capital[country]))
            else:
                city = rng.choice([c for c, k in kb.city_country.items() if k == country])
                out.append(rng.choice(GENERAL_TEMPLATES["city"]).format(country=country, city=city))
        elif r < 0.75:
            out.append(_health(rng))
        elif r < 0.9:
            out.append(_open_class(kb, rng, reserved))
        elif r < 0.9 + RARE_JARGON:
            out.append(_textbook(rng))
        else:
            out.append(_truism(rng))
    return " ".join(out[:n_sentences])


def learnable_facts(kb: DomainKB, drug: str) -> list[tuple[str, dict[str, str]]]:
    disease = kb.treats[drug]
    return [("treats", {"drug": drug, "disease": disease}),
            ("side_effect", {"drug": drug, "symptom": kb.side_effect[drug]}),
            ("form", {"drug": drug, "form": kb.form[drug]}),
            ("organ", {"disease": disease, "organ": kb.organ[disease]})]


def hard_facts(kb: DomainKB, hard: str) -> list[tuple[str, dict[str, str]]]:
    enzyme, disease = kb.enzyme[hard], kb.second_line[hard]
    return [("enzyme", {"hard": hard, "enzyme": enzyme}),
            ("inhibitor", {"hard": hard, "enzyme": enzyme, "inhibitor": kb.inhibitor[enzyme]}),
            ("dose", {"hard": hard, "dose": kb.dose[hard]}),
            ("second_line", {"hard": hard, "disease": disease, "first": kb.first_line[disease]})]


LEARNABLE_FACTS_PER_DRUG = 2


def learnable_doc(kb: DomainKB, rng: random.Random, n_sentences: int) -> str:
    """Two facts of one drug (random paraphrases), then two of another, until ``n_sentences``.

    Two, not all four: a drug's name repeats inside its stretch (so the base model can copy it from
    context: medium PPL), but a document names ~6 drugs rather than ~3. With 3 drugs per document, which
    drugs a document named explained ~2/3 of its log-PPL variance (some invented names are simply harder
    to predict), so a narrow PPL band held the facts of a few drugs and missed others: PPL then tracked
    *which* facts, not how valuable the text is. Averaging over more drugs keeps within-kind PPL about
    value, as in real text where a chunk mentions many entities.
    """
    out: list[str] = []
    while len(out) < n_sentences:
        facts = learnable_facts(kb, rng.choices(kb.drugs, weights=kb.drug_weight or None)[0])
        rng.shuffle(facts)
        out.extend(rng.choice(LEARNABLE_TEMPLATES[rel]).format(**slots)
                   for rel, slots in facts[:LEARNABLE_FACTS_PER_DRUG])
    return " ".join(out[:n_sentences])


def hard_doc(kb: DomainKB, rng: random.Random, n_sentences: int) -> str:
    """Dense facts: every sentence is a random fact of a *different* hard drug, so no name repeats inside
    a document (nothing to copy from context): more surprise per token than a learnable document, while
    each fact still recurs across documents and can be learned."""
    out: list[str] = []
    k = min(n_sentences, len(kb.hard_drugs))
    picks = (weighted_sample(rng, kb.hard_drugs, kb.hard_weight, k) if kb.hard_weight
             else rng.sample(kb.hard_drugs, k))
    for hard in picks:
        rel, slots = rng.choice(hard_facts(kb, hard))
        out.append(rng.choice(HARD_TEMPLATES[rel]).format(**slots))
    return " ".join(out)


def noise_doc(words: list[str], rng: random.Random, n_words: int, p_chars: float) -> str:
    """Unlearnable text: with probability ``p_chars`` random character strings, else word salad.

    Word salad draws words uniformly and independently from the world's whole vocabulary, so it has no
    relations to learn (shuffling real sentences would leak their co-occurrences).
    """
    if rng.random() < p_chars:
        alphabet = string.ascii_lowercase + string.digits
        return " ".join("".join(rng.choice(alphabet) for _ in range(rng.randint(2, 7))) for _ in range(n_words))
    return " ".join(rng.choice(words) for _ in range(n_words))


def vocabulary(gkb: GeneralKB, dkb: DomainKB) -> list[str]:
    """Every word the general and domain templates can produce (for word salad), sorted for determinism."""
    words: set[str] = set()
    for group in (GENERAL_TEMPLATES, LEARNABLE_TEMPLATES, HARD_TEMPLATES):
        for templates in group.values():
            for t in templates:
                words.update(w.strip(".,") for w in t.split() if "{" not in w)
    words.update(gkb.countries + gkb.people + list(gkb.city_country) + dkb.diseases + dkb.drugs + dkb.hard_drugs)
    words.update(dkb.enzymes + JOBS + PETS + FOODS + SYMPTOMS + FORMS + list(ORGANS) + HARD_DOSES)
    words.discard("")
    return sorted(words)
