"""One module per study page: its statistics, sentences, table and figure."""
