"""ecgtransfer.bench"""
