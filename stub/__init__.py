"""The run side, frozen by PyInstaller into the executable (Python 3.9, stdlib + zstandard + lazy requests)."""
