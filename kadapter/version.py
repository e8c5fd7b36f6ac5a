"""The library's version, in a module of its own so that modules recording it in saved files need not import the
package (which imports them: an import circle)."""
__version__ = "0.1.0"
