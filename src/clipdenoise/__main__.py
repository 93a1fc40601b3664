"""``python -m clipdenoise`` (also what ``torchrun -m clipdenoise train ...`` runs)."""

from clipdenoise.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
