from networks.vnet import VNet

__all__ = ["VNet"]
