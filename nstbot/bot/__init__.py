"""The Discord side: discord.py client, cogs, buttons, progress messages and delivery.

Nothing in this package imports torch or `nstbot.engine`: the gateway process stays light, and a
crash in the GPU stack cannot take it down.
"""
