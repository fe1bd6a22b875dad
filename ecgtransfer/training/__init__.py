"""ecgtransfer.training"""
