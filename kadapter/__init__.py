"""kadapter: K-Adapter (Wang et al., Findings of ACL 2021) — a frozen encoder with knowledge adapters."""
from .version import __version__  # noqa: F401
from .adapter import KnowledgeAdapter  # noqa: E402
from .backbone import BackboneFeatures, backbone_identity, default_backbone_path, load_backbone  # noqa: E402
from .config import AdapterConfig, BackboneIdentity, FusionConfig, default_tap_layers  # noqa: E402
from .fusion import Fusion  # noqa: E402
from .model import KAdapterModel, KAdapterOutput, random_backbone  # noqa: E402
from .progress import quiet_library_bars  # noqa: E402

quiet_library_bars()  # plain progress (papermill, logs): no frozen Hugging Face bars in saved notebooks

__all__ = [
    "AdapterConfig", "BackboneFeatures", "BackboneIdentity", "Fusion", "FusionConfig", "KAdapterModel",
    "KAdapterOutput", "KnowledgeAdapter", "backbone_identity", "default_backbone_path", "default_tap_layers",
    "load_backbone", "random_backbone",
]
