"""ecgtransfer.signals"""
