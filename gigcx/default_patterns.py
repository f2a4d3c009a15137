"""The shipped regular expressions for what the bot recognises by its words: a request for a
person, frustration, and staff topics (questions about the customer's own records).

They are the defaults of `bot.human_request`, `bot.frustration` and `routing.staff_topics` in
`gigcx.yaml`; a brand that sets one of those replaces the list. The example phrases recognised
by meaning are in `gigcx/bot/phrases.py`.
"""

from __future__ import annotations

DEFAULT_STAFF_TOPICS: dict[str, list[str]] = {
    "orders": [
        r"\bmy (?:order|package|parcel|delivery|shipment)s?\b",
        r"\border\s*(?:number|no\.?|nr\.?|#|id)?\s*[:#]?\s*[a-z]{0,4}-?\d{3,}",
        r"(?<![\w-])[a-z]{2,4}-\d{5,}\b",
        r"\b(?:where(?:'s| is)|when (?:will|does|do)) (?:my|our)\b",
        r"\b(?:i|we) (?:ordered|bought|purchased|received)\b.*\b(?:hasn'?t (?:arrived|come|"
        r"shipped)|never (?:arrived|came)|wrong|damaged|cracked|bent|missing)\b",
        r"\b(?:cancel|change|modify) (?:my|the) order\b",
        r"\bnever (?:arrived|came|got it)\b",
    ],
    "refunds": [
        r"\bmy (?:refund|money back|return|replacement|warranty claim|rma)\b",
        r"\b(?:rma|return|claim|ticket|case)\s*(?:number|no\.?|#)?\s*[:#]?\s*\d{3,}",
        r"\bmoney back\b",
        r"\b(?:want|need|get) (?:a|my) refund\b",
        r"\brefund (?:me|my|for my)\b",
    ],
    "billing": [
        r"\b(?:charged|billed) (?:twice|two times|double|wrong|me)\b",
        r"\bdouble charge",
        r"\bmy (?:invoice|receipt|bill|card|payment|subscription|charge)s?\b",
        r"\b(?:you|they) (?:charged|billed|took)\b",
        r"\b(?:charged|billed) (?:me|my|us)\b",
    ],
    "account": [
        r"\b(?:delete|close|locked out of|hacked) (?:my )?account\b",
        r"\bmy (?:account|login|log-in|profile|password reset)\b",
        r"\b(?:can'?t|cannot|unable to) (?:log ?in|sign ?in)\b",
        r"\bchange my (?:e-?mail|address|shipping address)\b",
    ],
}

DEFAULT_HUMAN_REQUEST = [
    r"\b(?:talk|speak|chat) (?:to|with) (?:a |an |some|your )?"
    r"(?:human|person|people|agent|someone|somebody|real|rep|representative|operator|expert|staff)",
    r"\b(?:human|real person|live agent|live person|representative|operator)\b(?: please)?$",
    r"\b(?:get|need|want) (?:a |an )?(?:human|person|agent|real person|representative)\b",
    r"\bconnect me (?:to|with)\b",
    r"\b(?:deal|talk|speak|chat|write|get in touch) (?:to|with) (?:a |an |some |one of )?"
    r"(?:human|person|somebody|someone|your (?:team|staff|support|people)|you guys)",
    r"\b(?:real|actual|live) (?:human|person|people|agent)\b|\bhuman being\b",
    r"\b(?:not|no more|stop) (?:talking to |chatting with )?(?:a |this |the )?"
    r"(?:bot|robot|machine)\b",
]

DEFAULT_FRUSTRATION = [
    r"\b(?:that|this|it) (?:did ?n[o']?t|does ?n[o']?t|did not|does not) help",
    r"\bnot (?:helpful|what i asked|what i meant|my question)\b",
    r"\b(?:useless|ridiculous|waste of time|pointless)\b",
    r"\byou(?:'re| are)? not (?:listening|understanding|helping)\b",
    r"\b(?:still|again) (?:not working|doesn'?t work|broken)\b",
    r"\balready (?:tried|did) that\b",
]
