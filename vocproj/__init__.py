"""vocproj: multi-label PASCAL VOC 2012 classification, reproduced and surpassed."""

__version__ = "0.1.0"
