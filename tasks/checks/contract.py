"""The checks step reads the deploy and k3s settings; it declares nothing of its own."""

from nr.contract import Contract

CONTRACT = Contract()
