"""The real MiniLM with a small untrained adapter and its "w/o knowledge" twin, shared by the probing tests."""
import pytest
import torch

from kadapter import AdapterConfig, KAdapterModel
from kadapter.probing import add_control_adapter

SMALL_ADAPTER = AdapterConfig(hidden_size=64, num_attention_heads=2, intermediate_size=128, num_transformer_layers=1)


@pytest.fixture(scope="module")
def minilm():
    """The real MiniLM with a small (untrained) adapter and its "w/o knowledge" twin."""
    torch.manual_seed(0)
    model = KAdapterModel.from_backbone(adapters={"factual": SMALL_ADAPTER})
    add_control_adapter(model, "factual", seed=1)
    return model
