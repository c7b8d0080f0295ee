"""The ``postroom`` command: a thin shell over the actions; library errors become one clean message here."""
