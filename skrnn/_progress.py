"""The progress bar that ``verbose=2`` draws during each epoch."""

import sys
from contextlib import contextmanager


@contextmanager
def progress_bar(total, show):
    """A progress bar over an epoch's ``total`` batches, for ``verbose=2``.

    Yields a function to call after each batch. tqdm draws the bar when it
    is installed; otherwise a one-line text bar is printed.
    """
    if not show:
        yield lambda: None
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        done = [0]

        def advance(width=30):
            done[0] += 1
            filled = width * done[0] // total
            end = "\n" if done[0] == total else ""
            print(
                f"\r[{'#' * filled}{'.' * (width - filled)}] {done[0]}/{total}",
                end=end,
                file=sys.stdout,
                flush=True,
            )

        yield advance
        return
    with tqdm(total=total, unit="batch", leave=False) as bar:
        yield bar.update
