"""The benchmark's scenarios, one module each; bench/run.py runs them and writes the report."""
