"""Saved photos, feedback, review, merge into a new dataset version, and champion/challenger promotion.

storage  consented photos: content-addressed, re-encoded without EXIF, thumbnails, sweeps (no torch)
service  feedback recorded once per (prediction, client key); review approve / relabel / reject (no torch)
merge    approved feedback → train samples of a new dataset version
promote  evaluate candidate and current on the fixed test split; export the winner for the server
"""
