"""A deterministic corpus of fictional facts, and questions whose answer is in exactly one document.

Four kinds of document, each a few paragraphs about one invented entity: a product sheet (a gadget and its
specifications), a staff profile (a person, their role, office and manager), a staff-handbook summary (a
company's remote-work, parental-leave and travel rules) and a project brief (a codenamed project's budget,
deadline, goal and owning team). Every entity name is invented (syllables from a seeded generator) and
appears in one document only, so a question that names it has exactly one right document.

Documents of one kind share their vocabulary on purpose (every product sheet talks about battery, weight
and warranty): the name is what tells them apart, as in a real knowledge base. Questions are paraphrases:
"How heavy is the Quorvex T-418?" for "It weighs 312 grams", never the document's own sentence.

    >>> documents, questions = build(seed=7, documents=240, questions=100)

``chunk_texts(n)`` yields ``n`` paragraph-sized texts from the same generator for the benchmark.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

ONSETS = [
    "b",
    "br",
    "c",
    "cr",
    "d",
    "dr",
    "f",
    "g",
    "gr",
    "h",
    "k",
    "l",
    "m",
    "n",
    "p",
    "pr",
    "qu",
    "r",
    "s",
    "st",
    "t",
    "tr",
    "v",
    "w",
    "z",
]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ou", "ei"]
CODAS = ["", "", "n", "r", "l", "s", "x", "th", "m", "nd", "sk", "v"]
FIRST_NAMES = [
    "Amara",
    "Bilal",
    "Chiara",
    "Dmitri",
    "Elif",
    "Farah",
    "Goran",
    "Hana",
    "Ines",
    "Jonas",
    "Kaveh",
    "Leona",
    "Matteo",
    "Nadia",
    "Oskar",
    "Priya",
    "Quentin",
    "Rosa",
    "Sefa",
    "Tomasz",
    "Ulla",
    "Viktor",
    "Wen",
    "Yara",
    "Zeynep",
    "Anders",
    "Beatriz",
    "Caspian",
    "Delphine",
    "Emeka",
]
CITIES = [
    "Lisbon",
    "Tallinn",
    "Montreal",
    "Osaka",
    "Nairobi",
    "Valparaiso",
    "Reykjavik",
    "Brisbane",
    "Gdansk",
    "Porto",
    "Tbilisi",
    "Halifax",
    "Leipzig",
    "Cork",
    "Adelaide",
]
DEPARTMENTS = [
    "logistics",
    "payroll",
    "legal",
    "customer support",
    "research",
    "procurement",
    "marketing",
    "data engineering",
    "facilities",
    "quality assurance",
]
ROLES = [
    "a payroll analyst",
    "an office manager",
    "a supply chain planner",
    "a contracts lawyer",
    "a field technician",
    "a data engineer",
    "a brand designer",
    "a quality inspector",
    "a travel coordinator",
    "a security officer",
    "a laboratory chemist",
    "a recruiter",
    "a fleet manager",
    "a tax accountant",
    "an interpreter",
    "a warehouse supervisor",
]
TOPICS = [
    "shipping customs forms",
    "the coffee machine rota",
    "spreadsheet macros",
    "visa paperwork",
    "printer jams",
    "conference bookings",
    "pension questions",
    "the company choir",
    "first aid training",
    "parking permits",
    "translation requests",
    "badge access",
]
HOBBIES = [
    "restores old sailing boats",
    "plays the cello in an amateur orchestra",
    "breeds carrier pigeons",
    "runs mountain ultramarathons",
    "keeps bees on a rooftop",
    "collects vintage maps",
    "builds wooden kayaks",
    "teaches evening pottery classes",
]
CATEGORIES = [
    "handheld weather station",
    "wireless label printer",
    "rugged tablet",
    "smart door lock",
    "portable projector",
    "GPS tracker for bicycles",
    "noise-cancelling headset",
    "soil moisture sensor",
    "digital microscope",
    "pocket translator",
]
AUDIENCES = [
    "field researchers",
    "warehouse staff",
    "hikers",
    "small offices",
    "schools",
    "farmers",
    "hospital porters",
    "delivery riders",
]
COLORS = ["slate grey", "ochre", "teal", "matte black", "sand beige", "signal orange"]
PORTS = ["USB-C", "a magnetic pogo connector", "a Qi wireless pad", "a barrel-jack adapter"]
INDUSTRIES = [
    "Foods",
    "Freight",
    "Textiles",
    "Robotics",
    "Pharma",
    "Media",
    "Insurance",
    "Ceramics",
    "Energy",
    "Optics",
]
GOALS = [
    "replace the paper timesheets with a mobile app",
    "cut warehouse energy use by a fifth",
    "move the customer database to a new data centre",
    "open a second distribution hub in the north",
    "translate the product manuals into nine languages",
    "automate the monthly invoice run",
    "redesign the checkout flow of the web shop",
    "certify the factory for ISO 14001",
    "train every driver in fuel-saving techniques",
    "build a recycling programme for returned devices",
]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
FILLER = [
    "The information on this page is reviewed once a year by the documentation team. Corrections can be sent "
    "through the internal feedback form, and earlier versions are kept in the archive.",
    "This page is part of the internal knowledge base. It is written for staff and partners and should not be "
    "shared outside the organisation without approval from the communications office.",
    "Questions that this page does not answer can be raised in the weekly open hour, which is announced on the "
    "intranet calendar. Urgent matters go to the service desk instead.",
    "Figures on this page were correct at the time of writing. Where a figure has changed, the newer value "
    "appears in the change log at the bottom of the original document.",
]


@dataclass(frozen=True, slots=True)
class Document:
    key: str  # stable identifier, e.g. "product-017"
    kind: str
    title: str
    text: str
    entity: str


@dataclass(frozen=True, slots=True)
class Question:
    text: str
    document_key: str
    answer: str  # the fact, as it is written in the document


@dataclass(slots=True)
class _Entity:
    document: Document
    questions: list[tuple[str, str]] = field(default_factory=list)  # (question, answer)


class _Names:
    """Invented words, never the same twice; ``family`` reuses one now and then for look-alike entities."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()
        self.families: dict[str, list[str]] = {}
        self.entities: set[str] = set()

    def family(self, kind: str, syllables: int = 2, reuse: float = 0.4) -> str:
        """A word for a family of entities (a product line, a surname): an earlier one with ``reuse`` odds."""
        pool = self.families.setdefault(kind, [])
        if pool and self.rng.random() < reuse:
            return self.rng.choice(pool)
        pool.append(self.word(syllables))
        return pool[-1]

    def entity(self, make: Callable[[], str]) -> str:
        """A full entity name no other document has."""
        while True:
            name = make()
            if name not in self.entities:
                self.entities.add(name)
                return name

    def word(self, syllables: int = 2) -> str:
        while True:
            parts = [self.rng.choice(ONSETS) + self.rng.choice(VOWELS) for _ in range(syllables)]
            word = ("".join(parts) + self.rng.choice(CODAS)).capitalize()
            if word.lower() not in self.used and len(word) >= 5:
                self.used.add(word.lower())
                return word


def _product(rng: random.Random, names: _Names, n: int) -> _Entity:
    # Product lines: several models share a brand and differ by their code ("Relam T-138", "Relam T-183").
    name = names.entity(lambda: f"{names.family('product')} {rng.choice('KTVXRM')}-{rng.randint(100, 999)}")
    maker = f"{names.word()} Devices"
    category, audience = rng.choice(CATEGORIES), rng.choice(AUDIENCES)
    year, weight, hours = rng.randint(2015, 2025), rng.randint(80, 1900), rng.randint(4, 72)
    warranty, color, port = rng.randint(1, 6), rng.choice(COLORS), rng.choice(PORTS)
    text = (
        f"The {name} is a {category} made by {maker} for {audience}. It was introduced in {year} and is sold "
        f"through authorised resellers in most European countries.\n\n"
        f"It weighs {weight} grams and its battery lasts {hours} hours. The casing is {color}, it charges over "
        f"{port}, and it carries a {warranty}-year warranty against manufacturing defects.\n\n"
        f"{rng.choice(FILLER)}"
    )
    document = Document(f"product-{n:03d}", "product", f"{name} product sheet", text, name)
    return _Entity(
        document,
        [
            (f"How long can the {name} run before it needs recharging?", f"{hours} hours"),
            (f"How heavy is the {name}?", f"{weight} grams"),
            (f"For how many years is the {name} covered if it breaks?", f"{warranty}-year warranty"),
            (f"Which firm manufactures the {name}?", maker),
            (f"When did the {name} first go on sale?", str(year)),
        ],
    )


def _person(rng: random.Random, names: _Names, n: int) -> _Entity:
    # Families: some people share a surname and differ by their first name.
    full = names.entity(lambda: f"{rng.choice(FIRST_NAMES)} {names.family('surname', rng.choice((2, 3)))}")
    first = full.split()[0]
    role, dept, city = rng.choice(ROLES), rng.choice(DEPARTMENTS), rng.choice(CITIES)
    company = f"{names.word()} {rng.choice(INDUSTRIES)}"
    year, manager = rng.randint(2004, 2024), f"{rng.choice(FIRST_NAMES)} {names.word()}"
    topic, hobby = rng.choice(TOPICS), rng.choice(HOBBIES)
    text = (
        f"{full} works as {role} in the {dept} department of {company}, in the {city} office.\n\n"
        f"{first} joined {company} in {year} and reports to {manager}. Colleagues usually come to {first} with "
        f"questions about {topic}.\n\n"
        f"Outside work, {first} {hobby}.\n\n{rng.choice(FILLER)}"
    )
    document = Document(f"person-{n:03d}", "person", f"Staff profile: {full}", text, full)
    return _Entity(
        document,
        [
            (f"What is {full}'s job?", role),
            (f"In which city is {full} based?", city),
            (f"Since when has {full} been with the firm?", str(year)),
            (f"Who is {full}'s line manager?", manager),
            (f"What do coworkers ask {full} to help them with?", topic),
        ],
    )


def _handbook(rng: random.Random, names: _Names, n: int) -> _Entity:
    company = f"{names.word()} {rng.choice(INDUSTRIES)}"
    staff, remote, leave = rng.randint(40, 9000), rng.randint(1, 4), rng.randint(6, 40)
    meals, notice = rng.randint(20, 90), rng.randint(1, 4)
    text = (
        f"This is the summary of the staff handbook of {company}, a company with {staff} employees.\n\n"
        f"Employees of {company} may work remotely on up to {remote} days each week. Parental leave is {leave} "
        f"weeks at full salary. On business trips the meal allowance is {meals} euros per day, and holiday "
        f"requests must be filed {notice} weeks ahead.\n\n{rng.choice(FILLER)}"
    )
    document = Document(f"handbook-{n:03d}", "handbook", f"{company} staff handbook", text, company)
    return _Entity(
        document,
        [
            (f"How many days per week can people at {company} do their job from home?", f"{remote} days"),
            (f"How long do new mothers and fathers at {company} get off on full pay?", f"{leave} weeks"),
            (f"What daily food budget does {company} give travelling staff?", f"{meals} euros"),
            (f"How big is the workforce of {company}?", f"{staff} employees"),
            (f"How far in advance must {company} workers ask for time off?", f"{notice} weeks"),
        ],
    )


def _project(rng: random.Random, names: _Names, n: int) -> _Entity:
    codename = f"Project {names.word(syllables=rng.choice((2, 3)))}"
    budget, goal, dept = rng.randint(1, 40) / 2, rng.choice(GOALS), rng.choice(DEPARTMENTS)
    month, year, staff = rng.choice(MONTHS), rng.randint(2025, 2029), rng.randint(3, 30)
    text = (
        f"{codename} aims to {goal}. It is run by the {dept} group with a team of {staff} people.\n\n"
        f"{codename} has a budget of {budget:g} million euros and is due to be completed in {month} {year}. "
        f"Progress is reported to the steering committee every month.\n\n{rng.choice(FILLER)}"
    )
    document = Document(f"project-{n:03d}", "project", f"{codename} brief", text, codename)
    return _Entity(
        document,
        [
            (f"How much money has been set aside for {codename}?", f"{budget:g} million euros"),
            (f"By when should {codename} be finished?", f"{month} {year}"),
            (f"What is {codename} trying to achieve?", goal),
            (f"Which department is in charge of {codename}?", dept),
            (f"How many people work on {codename}?", f"{staff} people"),
        ],
    )


KINDS: list[Callable[[random.Random, _Names, int], _Entity]] = [_product, _person, _handbook, _project]


def _entities(seed: int) -> Iterator[_Entity]:
    rng = random.Random(seed)
    names = _Names(rng)
    n = 0
    while True:
        for make in KINDS:
            yield make(rng, names, n)
        n += 1


def build(seed: int = 7, documents: int = 240, questions: int = 100) -> tuple[list[Document], list[Question]]:
    """``documents`` documents (the four kinds in turn) and ``questions`` questions about distinct documents."""
    if questions > documents:
        raise ValueError("at most one question per document")
    entities = [entity for entity, _ in zip(_entities(seed), range(documents), strict=False)]
    rng = random.Random(seed + 1)
    chosen = rng.sample(range(documents), questions)
    asked = []
    for index in sorted(chosen):
        entity = entities[index]
        text, answer = rng.choice(entity.questions)
        assert answer in entity.document.text, (text, answer)
        asked.append(Question(text, entity.document.key, answer))
    return [e.document for e in entities], asked


def chunk_texts(count: int, seed: int = 11) -> Iterator[tuple[str, str]]:
    """``count`` (title, paragraph) pairs: the documents' paragraphs without the shared filler."""
    produced = 0
    for entity in _entities(seed):
        for paragraph in entity.document.text.split("\n\n"):
            if paragraph in FILLER:
                continue
            yield entity.document.title, paragraph
            produced += 1
            if produced >= count:
                return
