"""A short built-in conversation for `memoryos-mcp demo`: stored, then searched."""

from __future__ import annotations

CONVERSATION: list[tuple[str, str]] = [
    (
        "Hi! I'm Maya. I just moved to Lisbon for a new job as a data engineer.",
        "Welcome to Lisbon, Maya! How is the new job going so far?",
    ),
    (
        "Busy. We're migrating our pipelines from Airflow to Dagster this quarter.",
        "A big migration. Are you moving the DAGs one by one or all at once?",
    ),
    (
        "One team at a time. My part is the billing pipeline, which is the messiest.",
        "Billing is usually the riskiest, so starting with good tests will pay off.",
    ),
    (
        "On weekends I go hiking. Last Saturday I walked the Sintra trail with my sister Ana.",
        "Sintra is beautiful. Did you make it up to the Moorish Castle?",
    ),
    (
        "Yes, the view was worth the climb, though Ana twisted her ankle on the way down.",
        "Ouch — I hope Ana's ankle heals quickly. Rest and ice help.",
    ),
    (
        "I'm also learning to cook Portuguese food. Tried bacalhau à brás yesterday.",
        "Bacalhau à brás is a classic! Did the eggs and potatoes come out creamy?",
    ),
    (
        "A bit dry. Next time I'll take it off the heat earlier.",
        "Good plan: the eggs keep cooking from the residual heat.",
    ),
    (
        "My cat Pixel hates the new apartment's balcony doors, she keeps scratching them.",
        "Cats often need time with new spaces; a scratching post near the door can help.",
    ),
    (
        "Work update: the Dagster migration of billing passed its first backfill test.",
        "Congratulations! The first clean backfill is a real milestone.",
    ),
    (
        "I'm planning to hike the Rota Vicentina coastal trail in October.",
        "The Fishermen's Trail is stunning in October. Will Ana join you again?",
    ),
    (
        "Probably, if her ankle is fine by then.",
        "Then build in short stages at first so her ankle isn't overloaded.",
    ),
    (
        "I want to make pastéis de nata for a team lunch next Friday.",
        "Ambitious! Puff pastry is the hard part; store-bought is fine for a first try.",
    ),
    (
        "Pixel finally sleeps on the balcony in the sun now.",
        "Great news — she has claimed the balcony as her territory.",
    ),
    (
        "My manager asked me to present the migration lessons at the engineering all-hands.",
        "A good chance to share how tests de-risked the billing move.",
    ),
    (
        "The pastéis de nata were a hit, although the custard was a bit runny.",
        "Runny custard usually means a few more minutes at very high heat.",
    ),
    (
        "I'm nervous about the all-hands talk; public speaking isn't my thing.",
        "Rehearse twice with a friend and keep to three key lessons; it will go well.",
    ),
]

QUESTIONS: list[str] = [
    "Who did Maya go hiking with, and what happened?",
    "How is the pipeline migration at work going?",
    "What has Maya cooked recently?",
]
