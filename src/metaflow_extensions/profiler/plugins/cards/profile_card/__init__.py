"""The profile_card card type (Metaflow looks for CARDS here)."""

from .card import ProfileCard

CARDS = [ProfileCard]
