"""ecgtransfer.physionet"""
