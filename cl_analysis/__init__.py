"""cl_analysis: the behaviour of contrastive loss (Wang & Liu, CVPR 2021; SimCLR), executable."""

__version__ = "0.1.0"
