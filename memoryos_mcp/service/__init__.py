"""The one facade every way in uses, and what it needs: settings, access, validation, export and import, backfill."""
