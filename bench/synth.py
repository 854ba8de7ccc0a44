"""Synthetic conversation history for scale benchmarks: a year of chat, deterministic from a seed.

Pages are LoCoMo-sized (~270 characters, user turn and assistant turn) and come in sessions: a session is
one evening's conversation of 6-20 exchanges about one or two topics, minutes apart; sessions are hours or
days apart. Topics recur over the year, as in a real user's history, and every page names its own mix of
people, places, things and numbers, so no two pages are the same text.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

NAMES = (
    "Maya Leo Priya Tom Aisha Jonas Mei Carlos Nora Ben Fatima Ivan Lucia Omar Hana Felix Zoe Raj Elena Sam "
    "Ingrid Kofi Yuki Diego Sara Mateo Lena Arjun Chloe Hugo Amara Nils Rosa Kenji Tara Luca Ada Emil Noor Jin"
).split()
PLACES = (
    "Lisbon Oslo Kyoto Denver Nairobi Porto Austin Bergen Seville Hanoi Quebec Tallinn Cusco Galway Split "
    "Bruges Malmo Lyon Krakow Valencia Zurich Sapporo Hobart Accra Leeds Tucson Graz Cork Bilbao Turku"
).split()
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()

TOPICS: dict[str, dict[str, list[str]]] = {
    "hiking": {
        "things": "trail ridge summit boots backpack map compass tent waterfall valley switchbacks blisters".split(),
        "user": [
            "We hiked the {thing} near {place} with {name} on {day}, about {num} kilometres, and my {thing2} held up.",
            "I'm planning a trip to the {thing} outside {place}; {name} says the {thing2} part takes {num} hours.",
            "My {thing} gave out on the way down from the {thing2} last {day}, so {name} lent me theirs.",
        ],
    },
    "cooking": {
        "things": "sourdough risotto curry dumplings lasagna pesto ramen tagine paella focaccia chutney brioche".split(),
        "user": [
            "I tried making {thing} for {name} on {day}; it took {num} minutes and the {thing2} came out better.",
            "Do you have tips for {thing}? Last time in {place} {name} showed me a trick with {thing2}.",
            "We hosted {num} people and I cooked {thing} with a side of {thing2}; {name} asked for the recipe.",
        ],
    },
    "work": {
        "things": "migration deadline roadmap review budget release incident backlog onboarding audit sprint demo".split(),
        "user": [
            "The {thing} at work slipped again; {name} wants the {thing2} done by {day} and we're {num} tickets behind.",
            "I presented the {thing} to the team in {place} and {name} pushed back on the {thing2} estimate.",
            "My manager {name} asked me to lead the {thing}; it means {num} extra hours on the {thing2} this month.",
        ],
    },
    "music": {
        "things": "guitar piano chords concert setlist rehearsal album violin drums choir vinyl melody".split(),
        "user": [
            "I practiced {thing} for {num} minutes on {day}; {name} thinks I should learn the {thing2} next.",
            "We saw a {thing} in {place} with {name}; the {thing2} in the second half was incredible.",
            "I bought a used {thing} for {num} dollars and {name} is helping me restring the {thing2}.",
        ],
    },
    "family": {
        "things": "birthday reunion wedding graduation anniversary picnic move visit holiday christening barbecue".split(),
        "user": [
            "My sister {name} is planning a {thing} in {place}; she invited {num} relatives and wants help with the {thing2}.",
            "Grandma turns {num} this year, so we're organising a {thing} on {day} with {name} doing the {thing2}.",
            "{name} finally came home for the {thing}; we talked about the {thing2} until {num} in the morning.",
        ],
    },
    "health": {
        "things": "physio knee running yoga sleep diet checkup swimming stretching marathon allergy posture".split(),
        "user": [
            "My {thing} has been bothering me since {day}; {name} suggested {thing2} twice a week for {num} weeks.",
            "I signed up for a {thing} in {place} in {num} weeks, so {name} and I started {thing2} training.",
            "The doctor in {place} said my {thing} is fine but I should cut back on {thing2}; {name} agreed.",
        ],
    },
    "travel": {
        "things": "flight hostel train passport museum ferry itinerary visa luggage market cathedral harbour".split(),
        "user": [
            "We booked a {thing} to {place} for {num} nights; {name} wants to see the {thing2} on {day}.",
            "My {thing} to {place} got delayed {num} hours, so {name} and I explored the {thing2} instead.",
            "Is a {thing} worth it in {place}? {name} loved the {thing2} there last spring.",
        ],
    },
    "garden": {
        "things": "tomatoes roses compost seedlings greenhouse basil hedge orchard pumpkins lavender soil beehive".split(),
        "user": [
            "My {thing} finally sprouted after {num} days; {name} says to move them near the {thing2}.",
            "On {day} {name} helped me build a bed for the {thing}, and we planted {num} rows of {thing2}.",
            "Slugs ate half my {thing} again; a neighbour from {place} recommended {thing2} around the edges.",
        ],
    },
    "pets": {
        "things": "puppy kitten vet leash aquarium parrot hamster training collar adoption shelter treats".split(),
        "user": [
            "We adopted a {thing} from the {thing2} on {day}; {name} named her after a town in {place}.",
            "The {thing} needs {num} sessions of {thing2} before the trip, {name} said.",
            "My {thing} escaped during the storm on {day}; {name} found her by the {thing2} after {num} hours.",
        ],
    },
    "reading": {
        "things": "novel poetry memoir thriller library bookclub biography essay fantasy audiobook classic manga".split(),
        "user": [
            "I finished a {thing} set in {place}; {name} recommended it and the {thing2} chapter made me cry.",
            "Our {thing} meets on {day}; we read {num} pages of a {thing2} each week, {name} hosts.",
            "I've been listening to a {thing} about {place} on my commute, {num} chapters in, like {name} said.",
        ],
    },
    "money": {
        "things": "savings mortgage taxes budget pension rent invoice insurance loan stocks refund subscription".split(),
        "user": [
            "I finally sorted my {thing}; {name} helped me find {num} euros I was losing on {thing2}.",
            "The {thing} went up again, so {name} and I are rethinking the {thing2} before {day}.",
            "Should I move my {thing} to a bank in {place}? {name} mentioned a {num} percent {thing2} offer.",
        ],
    },
    "art": {
        "things": "watercolour sketchbook pottery mural exhibition canvas clay sculpture portrait gallery ink linocut".split(),
        "user": [
            "I spent {day} on a {thing} of the harbour in {place}; {name} liked the {thing2} in the corner.",
            "My {thing} class moved to {day}; we're making {num} pieces with {thing2} for the show.",
            "{name} invited me to an {thing} opening in {place}; the {thing2} room had {num} works.",
        ],
    },
}
REPLIES = [
    "That sounds {adj}! How did {name} feel about the {thing}?",
    "Good to hear about the {thing}. Remember you said {place} was on your list too; is that still the plan?",
    "{adj_cap} progress. Maybe note how the {thing} went so you can compare next {day}.",
    "I'd keep an eye on the {thing}; last time it took you about {num} tries. Want a reminder?",
    "Thanks for the update on the {thing}. Say hi to {name} from me!",
]
ADJECTIVES = "wonderful exciting stressful promising lovely tough impressive relaxing".split()


def _fill(rng: random.Random, template: str, topic: str) -> str:
    things = TOPICS[topic]["things"]
    thing, thing2 = rng.sample(things, 2)
    adj = rng.choice(ADJECTIVES)
    return template.format(
        name=rng.choice(NAMES),
        place=rng.choice(PLACES),
        day=rng.choice(WEEKDAYS),
        num=rng.randint(2, 90),
        thing=thing,
        thing2=thing2,
        adj=adj,
        adj_cap=adj.capitalize(),
    )


def conversation(n_pages: int, seed: int = 0, start: datetime | None = None) -> Iterator[dict[str, object]]:
    """n_pages add_memory-shaped dicts in time order: sessions of 6-20 exchanges, one or two topics each."""
    rng = random.Random(seed)
    when = start or datetime(2024, 1, 1, 19, 0)
    topics = list(TOPICS)
    favourites = rng.sample(topics, 4)  # a user talks about a few things far more than the rest
    made = 0
    while made < n_pages:
        when += timedelta(hours=rng.choice([5, 20, 24, 30, 48, 72]))
        session_topics = [
            rng.choice(favourites if rng.random() < 0.6 else topics) for _ in range(rng.choice([1, 1, 2]))
        ]
        for i in range(min(rng.randint(6, 20), n_pages - made)):
            topic = (
                session_topics[i * len(session_topics) // 20]
                if len(session_topics) > 1
                else session_topics[0]
            )
            first, second = rng.sample(TOPICS[topic]["user"], 2)
            user = f"{_fill(rng, first, topic)} {_fill(rng, second, topic)}"
            reply = _fill(rng, rng.choice(REPLIES), topic)
            when += timedelta(minutes=rng.randint(1, 6))
            made += 1
            yield {
                "user_input": user,
                "agent_response": reply,
                "timestamp": when.isoformat(timespec="seconds"),
                "metadata": {"n": made},
            }


def write_jsonl(path: Path, n_pages: int, seed: int = 0, user_id: str | None = None) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for item in conversation(n_pages, seed):
            if user_id is not None:
                item["user_id"] = user_id
            out.write(json.dumps(item, ensure_ascii=False) + "\n")
    return path


QUERIES = [
    "What did I cook for my friends?",
    "When is the marathon?",
    "Who helped me with the garden?",
    "What happened at work with the deadline?",
    "Where did we go hiking?",
    "What book did I finish?",
    "How is the puppy doing?",
    "What did the doctor say?",
    "Which concert did we see?",
    "What did I decide about my savings?",
]
