"""gigcx: Gig CX customer support — an AI front line over a brand's knowledge files that
hands what it cannot answer to gig experts in Slack or to the brand's staff."""

__version__ = "0.1.0"
