"""``python -m data_prep``: the dataset converter CLI (see ``data_prep.convert``)."""

import sys

if __name__ == "__main__":
    # Imported here, not above: spawned worker processes re-import this module, and should
    # not pay for the converter's imports (JAX among them) that they never use.
    from data_prep.convert import main

    sys.exit(main())
