"""The core shared by every deployment unit: settings, key layout, audio, engines, transcripts.

Importing it is cheap: engines and FFmpeg load on first use, never at import.
"""
