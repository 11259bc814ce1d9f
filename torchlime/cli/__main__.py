"""``python -m torchlime.cli`` (what ``torchrun -m torchlime.cli explain-dataset`` runs)."""

from . import main

if __name__ == "__main__":
    raise SystemExit(main())
