"""The app bundle's folder (a package only so that its pyproject.toml ships with the workbench)."""
