"""Drafters: diffusion LMs proposing tokens for an autoregressive verifier (see the drafter issue)."""
