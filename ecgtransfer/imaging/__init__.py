"""ecgtransfer.imaging"""
