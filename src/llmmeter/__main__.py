"""``python -m llmmeter``: the same command line as the ``llmmeter`` script."""

from llmmeter._cli import run

if __name__ == "__main__":
    run()
