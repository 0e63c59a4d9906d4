"""Streamlit results dashboard (run: streamlit run dashboard/app.py -- --runs DIR)."""
