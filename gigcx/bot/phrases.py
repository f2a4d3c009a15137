"""Example phrases the bot recognises by meaning (not by exact words): a request for a person,
frustration, and questions about the customer's own records (staff topics).

A sentence of the customer's message that is close in meaning to one of these counts, wherever
it stands in a longer message. Brands add their own in `gigcx.yaml` (`bot.examples`,
`routing.staff_examples`); these are always included.
"""

from __future__ import annotations

HUMAN_REQUEST = [
    "can I talk to a real person",
    "I want to speak to a human",
    "let me talk to someone from your team",
    "is there anybody there who can help me",
    "could one of your staff have a look",
    "I prefer dealing with people, not machines",
    "please put me through to an agent",
    "I need someone who knows the product",
    "can a person check this for me",
    "I need a support agent",
    "can a technician phone me",
    "transfer me to customer service",
    "I don't want to talk to a bot",
    "are you a robot? I want a human",
    "connect me with a specialist",
]

FRUSTRATION = [
    "that didn't help at all",
    "this is useless",
    "you keep repeating the same answer",
    "that answers a different question",
    "you are not understanding me",
    "I already tried that and it still doesn't work",
    "this bot is a waste of time",
    "wrong answer",
    "still not working, this is so frustrating",
    "I read that already, it is not the problem",
]

STAFF_TOPICS: dict[str, list[str]] = {
    "orders": [
        "where is my order",
        "my package still hasn't arrived",
        "when will my delivery get here",
        "the item I ordered hasn't shipped yet",
        "can you change the delivery address on my order",
        "I want to cancel what I ordered",
        "my parcel was delivered to the wrong address",
        "the tracking on my shipment hasn't moved in days",
        "I got the wrong item in my box",
        "the thing I purchased still is not here",
    ],
    "refunds": [
        "I want my money back",
        "when will I get my refund",
        "the one I received is broken, send me a replacement",
        "it arrived damaged and I want to return it",
        "I sent it back weeks ago and have not been refunded",
        "what's the status of my return",
        "I want to make a warranty claim for mine",
    ],
    "billing": [
        "you charged me twice",
        "there is a charge on my card I don't recognise",
        "why was I billed after I cancelled",
        "the payment went through two times",
        "I need an invoice for my purchase",
        "my payment failed but money left my account",
        "cancel my subscription and stop charging me",
    ],
    "account": [
        "I can't log in to my account",
        "please delete my account and my data",
        "someone else is using my account",
        "I need to change the email on my account",
        "my account was locked",
        "I never received the verification code to sign in",
    ],
}
