"""The data engine's package. Importing it sets one process default, before pyarrow loads.

``MIMALLOC_PURGE_DELAY=-1``: Arrow's default allocator (mimalloc) keeps freed pages for reuse
instead of returning them to the OS 10 ms after they are freed. Curation allocates and frees
gigabytes of short-lived buffers, and every page handed back is faulted in again on the next
allocation: on ``bench/curate.py`` this default halved the system time (1.5 -> 0.8 s per
run) for a peak RSS of 2.0 instead of 1.7 GiB. A value the user set is kept; it has no
effect when pyarrow was imported before this package.
"""

import os

os.environ.setdefault("MIMALLOC_PURGE_DELAY", "-1")
