"""The runner: llama.cpp in a process of its own per loaded model.

(Being assembled: see the modules of this package.)
"""
