"""Every figure the notebooks draw, as functions returning a ``matplotlib.figure.Figure``.

``analysis`` holds the figures of the analysis core (notebooks 01–03: losses, gradients, τ
limits); ``experiments`` those of the trained runs (Figs 2, 4–9 beside the paper's points);
``tables`` renders Table 1 side by side.
"""

from .analysis import *  # noqa: F401,F403
from .analysis import __all__ as _analysis_all
from .experiments import *  # noqa: F401,F403
from .experiments import __all__ as _experiments_all
from .tables import *  # noqa: F401,F403
from .tables import __all__ as _tables_all

__all__ = [*_analysis_all, *_experiments_all, *_tables_all]
