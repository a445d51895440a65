"""Recipes: one task each (config dataclass, train, evaluate), registered by name for the CLI."""
from __future__ import annotations

from scratchzoo.recipes.common import Recipe
from scratchzoo.recipes import cnn, gpt, mlp, moe, quadratic, rnn, transformer

RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (
    quadratic.RECIPE, mlp.DIGITS, mlp.MNIST1D, cnn.DIGITS, cnn.MNIST1D,
    rnn.GRU_MNIST1D, rnn.LSTM_MNIST1D, rnn.LSTM_CHARLM, rnn.RNN_CHARLM,
    transformer.TRANSFORMER_PINYIN, transformer.TRANSFORMER_G2P,
    gpt.RECIPE, moe.MOE_REGRESSION, moe.MOE_GPT,
)}
