"""Registers this extension's step decorator with Metaflow.

The card type is found by Metaflow in plugins/cards/profile_card/ (CARDS).
A configuration file named mfextinit_*.py, rather than plugins/__init__.py,
keeps Metaflow from treating our plugins.cards as a replacement for its own.
"""

STEP_DECORATORS_DESC = [("profile_card", ".profile_decorator.ProfileCardDecorator")]

__mf_promote_submodules__ = ["profile_decorator"]
