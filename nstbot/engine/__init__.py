"""The style-transfer engine: VGG19 features, losses and the optimization loop (pure PyTorch).

Only worker processes import this package's modules; the bot process never does.
"""
