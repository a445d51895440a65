"""Optimizers (SGD, Adam, AdamW) and learning-rate schedules, with torch.optim's names and state dicts."""
from scratchzoo.optim import lr_scheduler  # noqa: F401
from scratchzoo.optim.adam import Adam, AdamW  # noqa: F401
from scratchzoo.optim.optimizer import Optimizer  # noqa: F401
from scratchzoo.optim.sgd import SGD  # noqa: F401
