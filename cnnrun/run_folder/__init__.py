"""run_folder"""
