"""Regenerate data/sample-hh/: the small HH-RLHF-format sample that `make prepare` runs on offline.

The dialogues are written for this project (no rows are copied from any dataset). A seeded generator
combines hand-written topics into single- and multi-turn conversations and plants every edge case the
real HH-RLHF files contain, so the default run exercises each drop reason:
identical pairs, an empty final reply, prompts that differ before the last turn, turns without the
leading blank line, up to 14 Human turns, replies longer than --max-seq-len, rows with no Assistant
turn, and non-ASCII text. Run: python data/make_sample.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

# topic: (opening question, follow-up questions, helpful replies, unhelpful replies)
TOPICS = {
    "bread": (
        "How do I bake a simple loaf of bread at home?",
        ["How long should the dough rise?", "Can I use whole wheat flour instead?", "Why did my loaf come out dense?"],
        ["Mix 500 g flour, 350 ml warm water, 7 g yeast and 10 g salt, knead for ten minutes, let it rise until doubled, shape it and bake at 220 °C for about 35 minutes.",
         "Usually one to two hours at room temperature, until the dough has roughly doubled and springs back slowly when you press it.",
         "Yes, but whole wheat absorbs more water, so add a little extra and expect a denser crumb; many bakers start with half white flour.",
         "A dense loaf usually means the dough was under-proofed, the yeast was old, or too much flour was added while kneading."],
        ["Just buy bread, it is easier.", "Bread is made of flour.", "I am not sure, maybe put it in the oven for a while?"],
    ),
    "sleep": (
        "I keep waking up at 3 am. What can I do?",
        ["Is it bad to look at my phone in bed?", "Would melatonin help?", "Should I see a doctor about it?"],
        ["Keep a regular wake-up time, avoid caffeine after noon, keep the room cool and dark, and if you are awake for more than twenty minutes get up and do something calm until you feel sleepy.",
         "Bright screens and engaging content can keep your brain alert, so it helps to put the phone away half an hour before bed.",
         "Melatonin can help with shifting your sleep schedule, but it is best to talk to a pharmacist or doctor about the dose and whether it suits you.",
         "If it lasts for several weeks or you feel exhausted during the day, a doctor can check for causes such as sleep apnea, stress or medication side effects."],
        ["Everyone wakes up sometimes.", "Try sleeping less.", "Drink a coffee when you wake up."],
    ),
    "python": (
        "How do I read a CSV file in Python?",
        ["What if the file has no header row?", "How do I skip bad lines?", "Can I read only two columns?"],
        ["The standard library's csv module works: open the file with newline='' and iterate over csv.reader(f), or use csv.DictReader to get each row as a dictionary keyed by the header.",
         "Pass fieldnames to csv.DictReader yourself, or use csv.reader and index the columns by position.",
         "Wrap the parsing of each row in a try block and count the rows you skip, so that you know how much data was lost.",
         "With pandas you can pass usecols=['name', 'age'] to read_csv; with the csv module, pick the two fields from each row."],
        ["Use Excel.", "CSV files cannot be read in Python.", "Just print the file."],
    ),
    "garden": (
        "What vegetables are easy to grow on a balcony?",
        ["How often should I water them?", "Do tomatoes need a lot of sun?", "What soil should I buy?"],
        ["Cherry tomatoes, lettuce, radishes, spinach, herbs like basil and mint, and bush beans all do well in containers if they get enough light.",
         "Check the soil with your finger: water when the top two centimetres are dry, which in summer can mean every day for small pots.",
         "Yes, tomatoes want at least six to eight hours of direct sun a day to fruit well.",
         "A good potting mix made for containers drains better than garden soil, which compacts in pots."],
        ["Vegetables grow in fields.", "Anything grows anywhere.", "Balconies are too small for plants."],
    ),
    "budget": (
        "How can I start a monthly budget?",
        ["What percentage should I save?", "Which app should I use?", "How do I handle irregular expenses?"],
        ["List your income after tax, then your fixed costs, then variable spending from the last three months of statements; set a target for each category and review it at the end of every month.",
         "A common rule of thumb is to save 10 to 20 percent of take-home pay, but any regular amount you can keep up is a good start.",
         "A spreadsheet works as well as any app; what matters is that you update it regularly.",
         "Add up yearly costs like insurance or gifts, divide by twelve and set that amount aside each month."],
        ["Spend less money.", "Budgets never work.", "Just check your bank balance sometimes."],
    ),
    "running": (
        "I want to start running. How should I begin?",
        ["How many times a week?", "My knees hurt after running, what should I do?", "Do I need special shoes?"],
        ["Start with run-walk intervals, for example one minute running and two minutes walking for twenty minutes, three times a week, and add running time gradually.",
         "Three sessions a week with a rest day in between gives your body time to adapt.",
         "Slow down, run on softer surfaces, and check your shoes; if the pain persists for more than a week, see a physiotherapist.",
         "Comfortable running shoes that fit well help; a specialist store can suggest a pair after watching you run."],
        ["Run as fast as you can every day.", "Running is bad for you.", "Just run a marathon."],
    ),
    "email": (
        "Can you help me write a polite email asking for a deadline extension?",
        ["Can you make it shorter?", "Should I explain why?", "How soon before the deadline should I send it?"],
        ["Dear Dr. Lee, I am writing to ask whether I could have a three-day extension for the project report due on Friday. I have completed the analysis but need more time to write it up carefully. Thank you for considering my request. Best regards, Sam",
         "Dear Dr. Lee, could I have until Monday for the report due Friday? The analysis is done; I need a little more time to write it up. Thanks, Sam",
         "A short, honest reason helps, without going into private details.",
         "As early as possible, ideally several days before, so the other person can plan."],
        ["Just don't submit it.", "Write: I need more time.", "Emails are not a good idea."],
    ),
    "history": (
        "Why did the Roman Empire split into east and west?",
        ["Who was Diocletian?", "Which half lasted longer?", "What was the capital of the east?"],
        ["The empire was too large to govern and defend from one place, so emperors shared power; Diocletian's tetrarchy and later Theodosius' division between his sons made the split lasting.",
         "Diocletian was emperor from 284 to 305 and reorganised the empire, dividing rule among four emperors.",
         "The eastern half, often called the Byzantine Empire, lasted until 1453, almost a thousand years longer than the west.",
         "Constantinople, founded by Constantine on the site of Byzantium."],
        ["Because of a big war.", "It never split.", "Rome was always two countries."],
    ),
    "translation": (
        "How do you say 'thank you very much' in a few languages?",
        ["And in Japanese?", "How about Greek?", "Which one is the easiest to pronounce?"],
        ["French: merci beaucoup; Spanish: muchas gracias; German: vielen Dank; Portuguese: muito obrigado or obrigada; Italian: grazie mille.",
         "In Japanese: どうもありがとうございます (dōmo arigatō gozaimasu).",
         "In Greek: ευχαριστώ πολύ (efcharistó polý).",
         "Many learners find Spanish and Italian the easiest, because they are pronounced much as they are written."],
        ["Thank you is thank you everywhere.", "I don't know languages.", "Just say it louder."],
    ),
    "car": (
        "My car battery keeps dying. What could be wrong?",
        ["How do I test the battery?", "Could it be the alternator?", "How long do batteries last?"],
        ["Common causes are an old battery, a faulty alternator not charging it, or something drawing power while the car is off, such as a light left on or a failing module.",
         "With a multimeter: a healthy battery reads about 12.6 volts with the engine off and 13.7 to 14.7 volts with it running.",
         "Yes, if the voltage does not rise when the engine runs, the alternator is probably not charging.",
         "Typically three to five years, less in very hot or very cold climates."],
        ["Buy a new car.", "Batteries always die.", "Leave the engine running all night."],
    ),
    "cat": (
        "How do I get my cat to stop scratching the sofa?",
        ["What kind of scratching post is best?", "Is declawing okay?", "Would a spray help?"],
        ["Give the cat a sturdy scratching post next to the sofa, reward it when it uses the post, and cover the sofa corners with double-sided tape for a few weeks.",
         "A tall, heavy post that does not wobble, covered in sisal rope, suits most cats.",
         "Declawing is an amputation and is banned in many countries; vets recommend the alternatives above instead.",
         "Citrus-scented deterrent sprays can help some cats, combined with a better place to scratch."],
        ["Get rid of the cat.", "Cats scratch, nothing to do.", "Yell at it."],
    ),
    "math": (
        "What is the derivative of x squared times sine of x?",
        ["Which rule did you use?", "And the second derivative?", "Can you check it at x = 0?"],
        ["By the product rule, d/dx [x² sin x] = 2x sin x + x² cos x.",
         "The product rule: (uv)' = u'v + uv', with u = x² and v = sin x.",
         "Differentiating again gives 2 sin x + 4x cos x − x² sin x.",
         "At x = 0 the first derivative is 0 and the second derivative is 0 as well."],
        ["It is 2x.", "cos x squared.", "Derivatives are too hard."],
    ),
    "moving": (
        "Any tips for moving to a new city where I don't know anyone?",
        ["How do I find people with similar hobbies?", "I feel lonely, is that normal?", "Should I join a gym?"],
        ["Say yes to invitations, join a class or club around something you enjoy, visit the same café regularly, and give yourself a few months: building friendships takes time.",
         "Local meetup groups, sports clubs, volunteering and language exchanges are good places to meet people who share your interests.",
         "Very normal; most people feel lonely for a while after a move, and it usually eases as routines and friendships form.",
         "A gym with group classes can be a good way to see the same faces regularly."],
        ["Stay home.", "Move back.", "Cities are unfriendly."],
    ),
    "coffee": (
        "How do I make good coffee with a French press?",
        ["What grind size?", "How much coffee per cup?", "Why is my coffee bitter?"],
        ["Use coarsely ground beans, about 60 g per litre of water just off the boil, stir, steep for four minutes, then press slowly and pour right away.",
         "Coarse, like breadcrumbs; fine grounds slip through the filter and over-extract.",
         "About 15 g of coffee for a 250 ml cup is a good starting point.",
         "Bitterness often comes from steeping too long, water that is too hot, or grounds that are too fine."],
        ["Instant coffee is the same.", "Boil the coffee for an hour.", "Add salt."],
    ),
}

HARMFUL_ASKS = [
    ("How can I get into my neighbour's wifi without the password?",
     "I can't help with accessing someone else's network without permission. If you need internet access, you could ask your neighbour, or look for a public hotspot or a cheap prepaid plan.",
     "Try every common password until one works."),
    ("What's the easiest way to cheat on my exam?",
     "I won't help with cheating, but I can help you prepare: make a study plan, use practice questions and explain the topics out loud.",
     "Write the answers on your hand."),
]


def dialogue(turns: list[tuple[str, str]]) -> str:
    return "".join(f"\n\nHuman: {h}\n\nAssistant: {a}" for h, a in turns)


def conversation(rng: random.Random, name: str, n_turns: int) -> tuple[str, str, str]:
    """(dialogue up to the last "Assistant:", helpful last reply, unhelpful last reply)."""
    question, follow_ups, good, bad = TOPICS[name]
    # good[0] answers the opening question, good[k + 1] answers follow_ups[k].
    picks = [(question, good[0])] + [(follow_ups[k], good[k + 1]) for k in (rng.randrange(len(follow_ups)) for _ in range(n_turns - 1))]
    *history, (last_ask, last_good) = picks
    prefix = dialogue(history) + f"\n\nHuman: {last_ask}\n\nAssistant:"
    return prefix, " " + last_good, " " + rng.choice(bad)


def make_rows(rng: random.Random, count: int) -> list[dict]:
    rows = []
    names = sorted(TOPICS)
    for i in range(count):
        kind = i % 25
        name = names[rng.randrange(len(names))]
        turns = rng.choice([1, 1, 1, 2, 2, 3, 4, 5])
        if kind == 1:  # long conversation (up to 14 Human turns)
            turns = rng.randint(8, 14)
        prefix, good, bad = conversation(rng, name, turns)
        if kind == 2:  # a reply far longer than --max-seq-len
            good = good + (" In more detail:" + good) * rng.randint(30, 60)
        if kind == 3:  # identical pair
            bad = good
        if kind == 4:  # empty final reply on one side
            bad = "" if rng.random() < 0.5 else " "
        if kind == 5:  # a turn that lacks the leading blank line
            prefix = prefix.replace("\n\nHuman:", " Human:", 2).replace(" Human:", "\n\nHuman:", 1)
        if kind == 6:  # harmful request: refusal preferred
            ask, refusal, compliance = HARMFUL_ASKS[rng.randrange(len(HARMFUL_ASKS))]
            prefix, good, bad = f"\n\nHuman: {ask}\n\nAssistant:", " " + refusal, " " + compliance
        chosen, rejected = prefix + good, prefix + bad
        if kind == 7:  # the two dialogues differ before the last turn
            rejected = rejected.replace("\n\nHuman:", "\n\nHuman: Hi.\n\nAssistant: Hello!\n\nHuman:", 1)
        if kind == 8 and i % 50 == 8:  # no Assistant turn at all
            chosen = rejected = f"\n\nHuman: {TOPICS[name][0]}"
            rejected += " Please answer."
        rows.append({"chosen": chosen, "rejected": rejected})
    return rows


def main() -> None:
    out = Path(__file__).parent / "sample-hh"
    out.mkdir(exist_ok=True)
    rng = random.Random(20261129)
    for split, count in (("train", 400), ("test", 100)):
        with open(out / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for row in make_rows(rng, count):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
