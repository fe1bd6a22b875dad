"""ecgtransfer.models"""
